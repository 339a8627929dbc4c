"""Module API driver: runtime manager -> load_module_from_file -> forward -> read."""

from __future__ import annotations

from typing import Any

import MNN
import MNN.expr as F
import numpy as np

from stress.contract import dtypes
from stress.contract.stages import Binding
from stress.factors.lifecycle import RENEWS
from stress.worker.drivers.common import DriverOptions, MNNError, ModelSpec, calling_mnn


def expr_type(dtype: str) -> Any:
    """``MNN.expr``'s type for a numpy dtype name (KeyError when it has none)."""
    name = dtypes.by_name(dtype).expr
    if name is None:
        raise KeyError(f"MNN.expr has no type for {dtype}")
    return getattr(F, name)


def load_module(spec: ModelSpec) -> Any:
    """A module on its own runtime manager (the only way ``numThread`` takes effect)."""
    with calling_mnn():
        runtime = MNN.nn.create_runtime_manager((spec.config,))
        return MNN.nn.load_module_from_file(
            spec.path, [n for n, _, _ in spec.inputs], spec.output_names, runtime_manager=runtime
        )


# misuse: what the harness does to the arrays before MNN gets them
PREPARE = {
    "wrong_rank": lambda array: array.reshape(-1),  # rank 1, the same elements
    "wrong_dtype": lambda array: array.astype(np.float64),
}


class ModuleEngine:
    """Builds what the threads share: nothing (``own``) or one module (``module``, and
    ``clone``, where each thread runs its own ``clone()`` of it)."""

    def __init__(self, spec: ModelSpec, options: DriverOptions) -> None:
        self.spec = spec
        self.sharing = options.sharing
        self.renews = RENEWS.get(options.lifecycle)  # what each iteration builds anew
        self.input_path = options.input_path
        self.misuse = options.misuse
        self.module = load_module(spec) if self.sharing in ("module", "clone") else None

    def bind(self, thread: int) -> ModuleBinding:
        return ModuleBinding(self)

    def release(self) -> None:
        self.module = None


class ModuleBinding(Binding):
    """One thread's module. Inputs become Vars as ``input_path`` (or a ``misuse``) says, by
    default ``expr.const`` (copies the array); outputs in NC4HW4 are converted to NCHW and
    ``fetch`` returns their ``read()`` views, valid while ``outputs`` holds the Vars."""

    def __init__(self, engine: ModuleEngine) -> None:
        self.engine = engine
        self.spec = engine.spec
        self.input_types = [expr_type(dtype) for _, _, dtype in self.spec.inputs]
        self.input_shapes = [list(shape) for _, shape, _ in self.spec.inputs]
        self.expected = len(self.spec.output_names)
        self.renews = engine.renews
        self.created = {"modules": 0, "clones": 0}
        self.placeholders: list[Any] = []
        self.variables: Any = []
        self.outputs: list[Any] = []  # kept alive while the caller copies their views
        self.make_variables = self._feeder(engine.input_path, engine.misuse)
        self.prepare = PREPARE.get(engine.misuse)  # harness work on the arrays, outside MNN's

    def setup(self) -> None:
        shared = self.engine.module
        if shared is None:
            self.renew("module")
        elif self.engine.sharing == "clone":
            self.created["clones"] += 1
            with calling_mnn():
                self.module = shared.clone()
        else:
            self.module = shared
        if self.engine.input_path == "placeholder":
            with calling_mnn():
                self.placeholders = [
                    F.placeholder(shape, F.NCHW, kind)
                    for shape, kind in zip(self.input_shapes, self.input_types)
                ]

    def begin(self) -> None:
        if self.renews is not None:
            self.renew(self.renews)

    def renew(self, level: str) -> None:
        self.created["modules"] += 1
        self.module = load_module(self.spec)

    def feed(self, inputs: list[np.ndarray]) -> None:
        if self.prepare is not None:
            inputs = [self.prepare(array) for array in inputs]
        try:
            self.variables = self.make_variables(inputs)
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

    def run(self) -> int:
        try:
            outputs = self.module.forward(self.variables)
        except Exception as exc:
            raise MNNError.wrap(exc) from exc
        if outputs is None or len(outputs) != self.expected:
            self.outputs = []
            return -1
        self.outputs = outputs
        return 0

    def fetch(self) -> list[np.ndarray]:
        try:
            self.outputs = [
                F.convert(v, F.NCHW) if v.data_format == F.NC4HW4 else v for v in self.outputs
            ]
            return [v.read() for v in self.outputs]
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

    def release(self) -> None:
        self.module = None
        self.variables, self.outputs, self.placeholders = [], [], []

    def facts(self) -> dict[str, Any]:
        return {"module": id(self.module) if self.module else None, **self.created}

    # --- input paths and misuse: each builds what ``forward`` gets from the arrays --------
    def _feeder(self, input_path: str, misuse: str) -> Any:
        feeders = {
            "const": self._consts,
            "numpy_array": lambda inputs: [MNN.numpy.array(a) for a in inputs],
            "placeholder": self._write_placeholders,
            "missing_input": lambda inputs: self._consts(inputs)[:-1],
            "extra_input": lambda inputs: [*self._consts(inputs), *self._consts(inputs)[:1]],
            "wrong_rank": self._consts_as_shaped,
            "wrong_dtype": self._consts,
            "bare_ndarray": lambda inputs: inputs[0],  # forward(ndarray): not even a list
        }
        return feeders.get(misuse, feeders[input_path])

    def _consts(self, inputs: list[np.ndarray]) -> list[Any]:
        return [
            F.const(array, shape, F.NCHW, kind)
            for array, shape, kind in zip(inputs, self.input_shapes, self.input_types)
        ]

    def _consts_as_shaped(self, inputs: list[np.ndarray]) -> list[Any]:
        """Consts of the arrays' own shapes, not the model's."""
        return [
            F.const(array, list(array.shape), F.NCHW, kind)
            for array, kind in zip(inputs, self.input_types)
        ]

    def _write_placeholders(self, inputs: list[np.ndarray]) -> list[Any]:
        for placeholder, array in zip(self.placeholders, inputs):
            placeholder.write(array)
        return self.placeholders
