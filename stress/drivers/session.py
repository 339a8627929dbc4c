"""Session API driver: Interpreter -> createSession -> copyFrom -> runSession -> outputs."""

from __future__ import annotations

from typing import Any

import MNN
import numpy as np

# By numpy's one-letter dtype code (``dtype.name`` is slow enough to show on the tiny model).
# Only float32, int32 and uint8 inputs pass validation: both APIs take those correctly.
_HALIDE = {
    "f": MNN.Halide_Type_Float,
    "i": MNN.Halide_Type_Int,
    "B": MNN.Halide_Type_Uint8,
    "d": MNN.Halide_Type_Double,
    "l": MNN.Halide_Type_Int64,
}


class SessionDriver:
    """One Interpreter and one session. Inputs go in through a fresh NCHW host tensor per call
    (``MNN.Tensor`` copies the array); outputs in NC4HW4 are converted by ``copyToHostTensor``.
    Inputs whose shape differs from the model's are resized once, before the first run."""

    def __init__(
        self,
        model_path: str,
        config: dict[str, Any],
        inputs: list[tuple[str, list[int]]],
        output_names: list[str],
    ) -> None:
        self.interpreter = MNN.Interpreter(model_path)
        self.session = self.interpreter.createSession(config)
        self.inputs = [self.interpreter.getSessionInput(self.session, n) for n, _ in inputs]
        resized = False
        for tensor, (_, shape) in zip(self.inputs, inputs):
            if tuple(tensor.getShape()) != tuple(shape):
                self.interpreter.resizeTensor(tensor, tuple(shape))
                resized = True
        if resized:
            self.interpreter.resizeSession(self.session)
        self.outputs = [self.interpreter.getSessionOutput(self.session, n) for n in output_names]
        self.readers = [self._reader(t) for t in self.outputs]

    @staticmethod
    def _reader(tensor: Any) -> Any:
        """A call returning the output's view: the tensor's own memory, or for NC4HW4 a NCHW
        host tensor filled by ``copyToHostTensor`` (MNN's own layout conversion)."""
        if tensor.getDimensionType() != MNN.Tensor_DimensionType_Caffe_C4:
            return tensor.getNumpyData
        shape = tensor.getShape()
        halide = tensor.getDataType()
        dtype = next((char for char, h in _HALIDE.items() if h == halide), "f")
        host = MNN.Tensor(shape, halide, np.zeros(shape, dtype), MNN.Tensor_DimensionType_Caffe)

        def read() -> np.ndarray:
            tensor.copyToHostTensor(host)
            return host.getNumpyData()

        return read

    def infer(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        for tensor, array in zip(self.inputs, inputs):
            tensor.copyFrom(
                MNN.Tensor(
                    array.shape, _HALIDE[array.dtype.char], array, MNN.Tensor_DimensionType_Caffe
                )
            )
        rc = self.interpreter.runSession(self.session)
        return rc, [read() for read in self.readers]
