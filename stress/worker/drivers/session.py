"""Session API driver: Interpreter -> createSession -> copyFrom -> runSession -> outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import MNN
import numpy as np

from stress.contract import dtypes
from stress.contract.stages import Binding
from stress.factors.lifecycle import RENEWS
from stress.worker.drivers import session_feed
from stress.worker.drivers.common import DriverOptions, MNNError, ModelSpec, calling_mnn

CAFFE = MNN.Tensor_DimensionType_Caffe


def halide_type(dtype: str) -> Any:
    """MNN's Halide type object for a numpy dtype name (KeyError when MNN has none)."""
    name = dtypes.by_name(dtype).halide
    if name is None:
        raise KeyError(f"MNN has no Halide type for {dtype}")
    return getattr(MNN, f"Halide_Type_{name}")


def dtype_of(halide: Any) -> dtypes.DType:
    """The table entry for one of MNN's Halide type objects (``UNKNOWN`` if none matches)."""
    for entry in dtypes.TABLE:
        if entry.halide and halide == getattr(MNN, f"Halide_Type_{entry.halide}", None):
            return entry
    return dtypes.UNKNOWN


class Interpreter:
    """An MNN Interpreter and how its sessions are made. With ``with_runtime`` (the original
    report's pattern) sessions get a runtime from ``createRuntime`` and ``saveTensors``."""

    def __init__(self, spec: ModelSpec, with_runtime: bool) -> None:
        self.spec = spec
        with calling_mnn():
            self.mnn = MNN.Interpreter(spec.path)
            self.runtime = self.mnn.createRuntime((spec.config,)) if with_runtime else None

    def new_session(self) -> Any:
        """A session with every input at the shape the scenario gives (resized if needed)."""
        spec = self.spec
        with calling_mnn():
            if self.runtime is None:
                session = self.mnn.createSession(spec.config)
            else:
                config = {**spec.config, "saveTensors": tuple(spec.output_names)}
                session = self.mnn.createSession(config, self.runtime[0])
            resized = False
            for name, shape, _ in spec.inputs:
                tensor = self.mnn.getSessionInput(session, name)
                if tuple(tensor.getShape()) != tuple(shape):
                    self.mnn.resizeTensor(tensor, tuple(shape))
                    resized = True
            if resized:
                self.mnn.resizeSession(session)
        return session


class SessionEngine:
    """Builds what the threads share: nothing (``own``), one Interpreter (``interpreter``), or
    one Interpreter and one session (``session``)."""

    def __init__(self, spec: ModelSpec, options: DriverOptions) -> None:
        self.spec = spec
        self.renews = RENEWS.get(options.lifecycle)  # what each iteration builds anew
        self.with_runtime = options.lifecycle == "session_per_iteration"
        self.feeder = session_feed.feeder(options.input_path, options.misuse)
        self.fast = options.input_path == "tensor_copy" and options.misuse == "none"
        self.raw_views = options.output_lifetime != "copy"
        self.interpreter: Interpreter | None = None
        self.session: Any = None
        if options.sharing in ("interpreter", "session"):
            self.interpreter = Interpreter(spec, self.with_runtime)
        if options.sharing == "session":
            assert self.interpreter is not None
            self.session = self.interpreter.new_session()

    def bind(self, thread: int) -> SessionBinding:
        return SessionBinding(self)

    def release(self) -> None:
        self.interpreter = self.session = None


class SessionBinding(Binding):
    """One thread's session. Inputs go in as ``input_path`` (or a ``misuse``) says; by
    default through a fresh NCHW host tensor per call (``MNN.Tensor`` copies the array).
    Every output is read through ``copyToHostTensor`` into an NCHW host tensor of ours: MNN
    converts its internal layout (NC4HW4 outputs report the NCHW dimension type in MNN
    3.6.1, so a type check cannot find them); an ``output_lifetime`` other than ``copy``
    reads MNN's own ``getNumpyData()`` views instead, as a user keeping them would."""

    def __init__(self, engine: SessionEngine) -> None:
        self.engine = engine
        self.spec = engine.spec
        self.halide = [halide_type(dtype) for _, _, dtype in self.spec.inputs]
        self.renews = engine.renews
        self.created = {"interpreters": 0, "sessions": 0}

    def setup(self) -> None:
        self.interpreter = self.engine.interpreter or self._new_interpreter()
        self.session = self.engine.session or self._new_session()
        self._attach()

    def begin(self) -> None:
        if self.renews is not None:
            self.renew(self.renews)

    def renew(self, level: str) -> None:
        if level == "interpreter":
            self.interpreter = self._new_interpreter()
        self.session = self._new_session()
        self._attach()

    def _new_interpreter(self) -> Interpreter:
        self.created["interpreters"] += 1
        return Interpreter(self.spec, self.engine.with_runtime)

    def _new_session(self) -> Any:
        self.created["sessions"] += 1
        return self.interpreter.new_session()

    def _attach(self) -> None:
        """This thread's handles on the session's inputs and outputs."""
        mnn, session = self.interpreter.mnn, self.session
        with calling_mnn():
            self.inputs = [mnn.getSessionInput(session, name) for name, _, _ in self.spec.inputs]
            outputs = [mnn.getSessionOutput(session, name) for name in self.spec.output_names]
            described = [(t, t.getShape(), t.getDataType()) for t in outputs]
        if self.engine.raw_views:
            self.readers = [tensor.getNumpyData for tensor, _, _ in described]
        else:
            self.readers = [_reader(*output) for output in described]

    def feed(self, inputs: list[np.ndarray]) -> None:
        self.engine.feeder(self, inputs)

    def run(self) -> int:
        try:
            return self.interpreter.mnn.runSession(self.session)
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

    def fetch(self) -> list[np.ndarray]:
        try:
            return [read() for read in self.readers]
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

    def iteration(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        """begin, feed, run and fetch in one go: the hot path when no factor adds a layer."""
        if not self.engine.fast:
            return Binding.iteration(self, inputs)
        if self.renews is not None:
            self.renew(self.renews)
        try:
            for tensor, halide, array in zip(self.inputs, self.halide, inputs):
                tensor.copyFrom(MNN.Tensor(array.shape, halide, array, CAFFE))
            rc = self.interpreter.mnn.runSession(self.session)
            return rc, [read() for read in self.readers]
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

    def release(self) -> None:
        self.interpreter = self.session = None  # type: ignore[assignment]
        self.inputs, self.readers = [], []

    def facts(self) -> dict[str, Any]:
        return {
            "interpreter": id(self.interpreter.mnn) if self.interpreter else None,
            "session": id(self.session),
            **self.created,
        }


def _reader(tensor: Any, shape: tuple[int, ...], halide: Any) -> Callable[[], np.ndarray]:
    """A call that fills our NCHW host tensor from the output and returns its view."""
    entry = dtype_of(halide)
    if entry is dtypes.UNKNOWN:
        return tensor.getNumpyData
    zeros = np.zeros(shape, entry.name)  # ours: a MemoryError here is not MNN's
    with calling_mnn():
        host = MNN.Tensor(shape, halide, zeros, CAFFE)

    def read() -> np.ndarray:
        tensor.copyToHostTensor(host)
        return host.getNumpyData()

    return read
