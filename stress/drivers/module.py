"""Module API driver: runtime manager -> load_module_from_file -> forward -> read."""

from __future__ import annotations

from typing import Any

import MNN
import MNN.expr as F
import numpy as np

from stress import dtypes
from stress.drivers import MNNError


def expr_type(dtype: str) -> Any:
    """``MNN.expr``'s type for a numpy dtype name (KeyError when it has none)."""
    name = dtypes.by_name(dtype).expr
    if name is None:
        raise KeyError(f"MNN.expr has no type for {dtype}")
    return getattr(F, name)


class ModuleDriver:
    """One module on its own runtime manager (the only way ``numThread`` takes effect). Inputs
    are ``expr.const`` (copies the array); outputs in NC4HW4 are converted to NCHW."""

    def __init__(
        self,
        model_path: str,
        config: dict[str, Any],
        inputs: list[tuple[str, list[int], str]],
        output_names: list[str],
    ) -> None:
        self.input_types = [expr_type(dtype) for _, _, dtype in inputs]
        self.input_shapes = [list(shape) for _, shape, _ in inputs]
        self.expected = len(output_names)
        self._alive: list[Any] = []  # keeps output Vars alive while the caller copies their views
        try:
            self.runtime = MNN.nn.create_runtime_manager((config,))
            self.module = MNN.nn.load_module_from_file(
                model_path, [n for n, _, _ in inputs], output_names, runtime_manager=self.runtime
            )
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

    def infer(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        try:
            outputs = self.module.forward(
                [
                    F.const(array, shape, F.NCHW, kind)
                    for array, shape, kind in zip(inputs, self.input_shapes, self.input_types)
                ]
            )
        except Exception as exc:
            raise MNNError.wrap(exc) from exc
        if outputs is None or len(outputs) != self.expected:
            self._alive = []
            return -1, []
        try:
            self._alive = [
                F.convert(v, F.NCHW) if v.data_format == F.NC4HW4 else v for v in outputs
            ]
            return 0, [v.read() for v in self._alive]
        except Exception as exc:
            raise MNNError.wrap(exc) from exc
