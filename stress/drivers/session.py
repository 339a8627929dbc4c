"""Session API driver: Interpreter -> createSession -> copyFrom -> runSession -> outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import MNN
import numpy as np

from stress import dtypes
from stress.drivers import MNNError


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


class SessionDriver:
    """One Interpreter and one session. Inputs go in through a fresh NCHW host tensor per call
    (``MNN.Tensor`` copies the array). Every output is read through ``copyToHostTensor`` into
    an NCHW host tensor of ours: MNN converts its internal layout (NC4HW4 outputs report the
    NCHW dimension type in MNN 3.6.1, so a type check cannot find them). Inputs whose shape
    differs from the model's are resized once, before the first run."""

    def __init__(
        self,
        model_path: str,
        config: dict[str, Any],
        inputs: list[tuple[str, list[int], str]],
        output_names: list[str],
    ) -> None:
        self.halide = [halide_type(dtype) for _, _, dtype in inputs]
        shapes = [tuple(shape) for _, shape, _ in inputs]
        try:
            self.interpreter = MNN.Interpreter(model_path)
            self.session = self.interpreter.createSession(config)
            self.inputs = [self.interpreter.getSessionInput(self.session, n) for n, _, _ in inputs]
            self._resize(shapes)
            outputs = [self.interpreter.getSessionOutput(self.session, n) for n in output_names]
            described = [(t, t.getShape(), t.getDataType()) for t in outputs]
        except Exception as exc:
            raise MNNError.wrap(exc) from exc
        self.readers = [self._reader(*output) for output in described]

    def _resize(self, shapes: list[tuple[int, ...]]) -> None:
        resized = False
        for tensor, shape in zip(self.inputs, shapes):
            if tuple(tensor.getShape()) != shape:
                self.interpreter.resizeTensor(tensor, shape)
                resized = True
        if resized:
            self.interpreter.resizeSession(self.session)

    @staticmethod
    def _reader(tensor: Any, shape: tuple[int, ...], halide: Any) -> Callable[[], np.ndarray]:
        """A call that fills our NCHW host tensor from the output and returns its view."""
        entry = dtype_of(halide)
        if entry is dtypes.UNKNOWN:
            return tensor.getNumpyData
        zeros = np.zeros(shape, entry.name)  # ours: a MemoryError here is not MNN's
        try:
            host = MNN.Tensor(shape, halide, zeros, MNN.Tensor_DimensionType_Caffe)
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

        def read() -> np.ndarray:
            tensor.copyToHostTensor(host)
            return host.getNumpyData()

        return read

    def infer(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        caffe = MNN.Tensor_DimensionType_Caffe
        try:
            for tensor, halide, array in zip(self.inputs, self.halide, inputs):
                tensor.copyFrom(MNN.Tensor(array.shape, halide, array, caffe))
            rc = self.interpreter.runSession(self.session)
            return rc, [read() for read in self.readers]
        except Exception as exc:
            raise MNNError.wrap(exc) from exc
