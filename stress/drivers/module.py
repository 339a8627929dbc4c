"""Module API driver: runtime manager -> load_module_from_file -> forward -> read."""

from __future__ import annotations

from typing import Any

import MNN
import MNN.expr as F
import numpy as np

# By numpy's one-letter dtype code; float64 and int64 are refused at validation (MNN 3.6.1
# computes wrong values for them through expr.const).
_EXPR_DTYPES = {"f": F.float, "i": F.int, "B": F.uint8}


class ModuleDriver:
    """One module on its own runtime manager (the only way ``numThread`` takes effect). Inputs
    are ``expr.const`` (copies the array); outputs in NC4HW4 are converted to NCHW."""

    def __init__(
        self,
        model_path: str,
        config: dict[str, Any],
        inputs: list[tuple[str, list[int]]],
        output_names: list[str],
    ) -> None:
        input_names = [name for name, _ in inputs]
        self.runtime = MNN.nn.create_runtime_manager((config,))
        self.module = MNN.nn.load_module_from_file(
            model_path, input_names, output_names, runtime_manager=self.runtime
        )
        self.expected = len(output_names)
        self._alive: list[Any] = []  # keeps output Vars alive while the caller copies their views

    def infer(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        variables = [F.const(a, list(a.shape), F.NCHW, _EXPR_DTYPES[a.dtype.char]) for a in inputs]
        outputs = self.module.forward(variables)
        if outputs is None or len(outputs) != self.expected:
            self._alive = []
            return -1, []
        self._alive = [F.convert(v, F.NCHW) if v.data_format == F.NC4HW4 else v for v in outputs]
        return 0, [v.read() for v in self._alive]
