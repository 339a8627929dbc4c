"""How the inputs reach MNN: the call that hands them over (the drivers implement each).

Session API: ``tensor_copy`` (``copyFrom`` a host tensor in NCHW), ``nhwc`` (a host tensor
in NHWC, the data transposed to match), ``nc4hw4`` (a host tensor in MNN's packed NC4HW4
layout), ``host_write`` (writing into the session input's ``getNumpyData()`` view). Only
4-D inputs have a layout: the others go in as NCHW on every path.

Module API: ``const`` (``MNN.expr.const``), ``numpy_array`` (``MNN.numpy.array``),
``placeholder`` (a placeholder per input, made at set-up, ``write`` each iteration).
"""

from __future__ import annotations

from stress.factors.factor import Factor, allowed_per_api

INPUT_PATHS = {
    "session": ("tensor_copy", "nhwc", "nc4hw4", "host_write"),
    "module": ("const", "numpy_array", "placeholder"),
}

INPUT_PATH = Factor(
    name="input_path",
    kind=str,
    default="tensor_copy",
    per_api={api: paths[0] for api, paths in INPUT_PATHS.items()},
    choices=(*INPUT_PATHS["session"], *INPUT_PATHS["module"]),
    doc="How inputs reach MNN. Session API: tensor_copy (copyFrom an NCHW host tensor), nhwc, "
    "nc4hw4 (host tensors in those layouts), host_write (write into the session input's "
    "getNumpyData view). Module API: const (expr.const), numpy_array (MNN.numpy.array), "
    "placeholder (a placeholder's write).",
    rules=(allowed_per_api("input_path", INPUT_PATHS),),
)

FACTORS = (INPUT_PATH,)
