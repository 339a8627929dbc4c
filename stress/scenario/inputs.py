"""The scenario's inputs against its model: types, names, shapes, generators and input files.
Every fault is a ScenarioError naming the file, the line, the key and a fix."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from ruamel.yaml.comments import CommentedMap

from stress.errors import ScenarioError
from stress.models import ModelInfo, TensorInfo
from stress.scenario.schema import (
    INPUT_DTYPES,
    MAX_DIM,
    MAX_INPUT_BYTES,
    UNSCALED_DISTRIBUTIONS,
    InputSpec,
    Scenario,
)
from stress.scenario.yaml_source import error_at, line_of
from stress.worker.inputs import FILE_SUFFIXES, npz_keys, read_array, read_header

Fail = Callable[..., ScenarioError]  # error_at with the file, data and key already given


def check_inputs(path: Path, data: CommentedMap, spec: Scenario, model: ModelInfo) -> None:
    """What the model decides: input types, which names exist, and which shapes can work."""
    _check_dtypes(path, data, model)
    for name, given in spec.inputs.items():
        tensor = model.input(name)
        if tensor is None:
            names = ", ".join(t.name for t in model.inputs)
            raise error_at(
                path,
                data,
                ("inputs", name),
                f"model {spec.model!r} has no input {name!r}",
                fix=f"the model's inputs are: {names}",
            )
        _check_generator(path, data, name, given)
        if given.shape is not None:
            _check_shape(path, data, given.shape, tensor)
        if given.file is not None:
            _check_file(path, data, given, tensor)
    _check_dynamic_shapes_given(path, data, spec, model)


def _check_generator(path: Path, data: CommentedMap, name: str, given: InputSpec) -> None:
    """``file`` replaces the generator; large and denormal span ranges set by the dtype, which
    ``scale`` would only leave."""
    if given.file is not None:
        for key in ("distribution", "scale"):
            if key in given.model_fields_set:
                raise error_at(
                    path,
                    data,
                    ("inputs", name, key),
                    f"`{key}` does not apply to an input read from `file`",
                    fix=f"remove `{key}`, or remove `file` to generate the values",
                )
    elif given.distribution in UNSCALED_DISTRIBUTIONS and given.scale != 1.0:
        raise error_at(
            path,
            data,
            ("inputs", name, "scale"),
            f"`scale` does not apply to distribution {given.distribution}: its values span "
            "a range set by the input's dtype",
            fix="remove `scale`; for values of a chosen size use distribution: normal with scale",
        )


def _check_file(path: Path, data: CommentedMap, given: InputSpec, tensor: TensorInfo) -> None:
    """An input read from a file is fed as it is, so it must have the model's dtype and shape;
    the header is checked first, so a huge or hostile file is refused unread. A dynamic input
    given no ``shape`` takes the file's."""
    source = given.file_path(path.parent)
    assert source is not None
    fail = partial(error_at, path, data, ("inputs", tensor.name, "file"))
    shape, dtype = _file_header(source, tensor.name, fail)
    _check_file_dtype(source, dtype, tensor, fail)
    _check_file_shape(source, shape, given.shape, tensor, fail)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_INPUT_BYTES:
        raise fail(
            f"{source} holds {list(shape)} {dtype}: {nbytes:,} bytes, more than the limit of "
            f"{MAX_INPUT_BYTES:,} for one input",
            fix="use a smaller array",
        )
    _read_file(source, tensor.name, fail)
    if given.shape is None:
        # The input's shape from here on: jobs plan with it, workers check the file still has it.
        given.shape = list(shape)


def _file_header(source: Path, name: str, fail: Fail) -> tuple[tuple[int, ...], np.dtype]:
    if not source.is_file():
        what = "is not a regular file" if source.exists() else "does not exist"
        raise fail(
            f"{source} {what}",
            fix="give a .npy or .npz file; a relative path is taken from the scenario file's "
            "folder",
        )
    if source.suffix not in FILE_SUFFIXES:
        raise fail(
            f"{source} is not a .npy or .npz file",
            fix=f"save the array with numpy.save, or with numpy.savez under the name {name!r}",
        )
    try:
        return read_header(str(source), name)
    except KeyError:
        keys = ", ".join(npz_keys(str(source))) or "none"
        raise fail(
            f"{source} holds no array named {name!r}; it has: {keys}",
            fix=f"save it under the input's name: numpy.savez(path, **{{{name!r}: array}})",
        ) from None
    except (OSError, ValueError) as exc:
        raise _unreadable(source, exc, fail) from exc


def _read_file(source: Path, name: str, fail: Fail) -> None:
    """All of it, as the worker will: a truncated or damaged file is refused before a run."""
    try:
        read_array(str(source), name)
    except (OSError, ValueError) as exc:
        raise _unreadable(source, exc, fail) from exc


def _unreadable(source: Path, exc: Exception, fail: Fail) -> ScenarioError:
    if isinstance(exc, OSError):
        return fail(f"cannot read {source}: {exc.strerror or exc}", fix="check its permissions")
    return fail(
        f"{source} is not a valid {source.suffix} file: {exc}",
        fix="write it again with numpy.save (.npy) or numpy.savez (.npz)",
    )


def _check_file_dtype(source: Path, dtype: np.dtype, tensor: TensorInfo, fail: Fail) -> None:
    """Never cast: a float file fed to an int input would hide what the file holds. Only the
    byte order may differ (the worker converts it; values stay the same)."""
    if dtype.hasobject:
        raise fail(
            f"{source} holds Python objects (dtype {dtype}), which are never unpickled",
            fix=f"save a plain {tensor.dtype} array",
        )
    if dtype.newbyteorder("=") != np.dtype(tensor.dtype):
        raise fail(
            f"{source} holds {dtype}; the model's input {tensor.name!r} is {tensor.dtype}, "
            "and inputs are never cast",
            fix=f"save it as {tensor.dtype}: numpy.save(path, array.astype(numpy.{tensor.dtype}))",
        )


def _check_file_shape(
    source: Path, shape: tuple[int, ...], given: list[int] | None, tensor: TensorInfo, fail: Fail
) -> None:
    """The file's shape must be ``shape`` where given, else the model's (any size where -1)."""
    wanted = given or list(tensor.shape)
    fits = len(shape) == len(wanted) and all(
        0 < dim <= MAX_DIM and (want <= 0 or want == dim) for dim, want in zip(shape, wanted)
    )
    if fits:
        return
    needs = f"`shape` gives {wanted}" if given else f"the model's input needs {wanted}"
    any_size = "" if tensor.is_static or given else f", where -1 is any size up to {MAX_DIM:,}"
    raise fail(
        f"{source} holds an array of shape {list(shape)}; {needs}",
        fix=f"save an array of shape {wanted}{any_size}",
    )


def _check_dtypes(path: Path, data: CommentedMap, model: ModelInfo) -> None:
    for tensor in model.inputs:
        if tensor.dtype not in INPUT_DTYPES:
            raise error_at(
                path,
                data,
                ("model",),
                f"input {tensor.name!r} is {tensor.dtype}; mnn-stress feeds only "
                f"{', '.join(INPUT_DTYPES)} host tensors",
                fix="use a model whose inputs have those types",
            )


def _check_shape(path: Path, data: CommentedMap, shape: list[int], tensor: TensorInfo) -> None:
    """A given shape may set only the model's dynamic (-1) dimensions: an input larger than a
    fixed shape makes MNN read memory it never wrote, and the run reports false differences."""
    loc = ("inputs", tensor.name, "shape")
    declared = list(tensor.shape)
    if len(shape) != len(declared):
        raise error_at(
            path,
            data,
            loc,
            f"shape has rank {len(shape)}, the model's input has rank {len(declared)} {declared}",
            fix=f"give {len(declared)} dimensions",
        )
    wrong = [i for i, dim in enumerate(declared) if dim > 0 and shape[i] != dim]
    if wrong and tensor.is_static:
        raise error_at(
            path,
            data,
            loc,
            f"the model's input {tensor.name!r} has the fixed shape {declared}; "
            "MNN would compute on memory it never wrote",
            fix="remove `shape`, or use a model whose input has dynamic (-1) dimensions",
        )
    if wrong:
        raise error_at(
            path,
            data,
            (*loc, wrong[0]),
            f"the model's input {tensor.name!r} has the shape {declared}; only its -1 "
            "dimensions may be chosen",
            fix=f"give {[dim if dim > 0 else shape[i] for i, dim in enumerate(declared)]}",
        )
    _check_input_size(path, data, TensorInfo(tensor.name, tuple(shape), tensor.dtype))


def _check_input_size(path: Path, data: CommentedMap, given: TensorInfo) -> None:
    if given.nbytes > MAX_INPUT_BYTES:
        raise error_at(
            path,
            data,
            ("inputs", given.name, "shape"),
            f"{list(given.shape)} {given.dtype} is {given.nbytes:,} bytes, more than the limit "
            f"of {MAX_INPUT_BYTES:,} for one input",
            fix="use smaller dimensions",
        )


def _check_dynamic_shapes_given(
    path: Path, data: CommentedMap, spec: Scenario, model: ModelInfo
) -> None:
    for tensor in model.inputs:
        if not tensor.is_static and (
            tensor.name not in spec.inputs or spec.inputs[tensor.name].shape is None
        ):
            raise ScenarioError(
                f"input {tensor.name!r} has a dynamic shape {list(tensor.shape)}",
                file=str(path),
                key=f"inputs.{tensor.name}.shape",
                line=line_of(data, ("inputs", tensor.name)) or line_of(data, ("model",)),
                fix=f"set inputs.{tensor.name}.shape to concrete dimensions, or give a "
                "`file` whose array has them",
            )
