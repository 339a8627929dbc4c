"""Session API driver: Interpreter -> createSession -> copyFrom -> runSession -> outputs."""

from __future__ import annotations

from typing import Any

import MNN
import numpy as np

_HALIDE = {
    "float32": "Halide_Type_Float",
    "int32": "Halide_Type_Int",
    "uint8": "Halide_Type_Uint8",
    "float64": "Halide_Type_Double",
    "int64": "Halide_Type_Int64",
}


class SessionDriver:
    """One Interpreter and one session. Inputs go in through a fresh NCHW host tensor per call
    (``MNN.Tensor`` copies the array); outputs in NC4HW4 are converted by ``copyToHostTensor``."""

    def __init__(
        self,
        model_path: str,
        config: dict[str, Any],
        input_names: list[str],
        output_names: list[str],
    ) -> None:
        self.interpreter = MNN.Interpreter(model_path)
        self.session = self.interpreter.createSession(config)
        self.inputs = [self.interpreter.getSessionInput(self.session, n) for n in input_names]
        self.outputs = [self.interpreter.getSessionOutput(self.session, n) for n in output_names]
        self.host_outputs = [self._host_copy(t) for t in self.outputs]

    @staticmethod
    def _host_copy(tensor: Any) -> Any:
        if tensor.getDimensionType() != MNN.Tensor_DimensionType_Caffe_C4:
            return None
        shape = tensor.getShape()
        return MNN.Tensor(
            shape, tensor.getDataType(), np.zeros(shape, np.float32), MNN.Tensor_DimensionType_Caffe
        )

    def infer(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        for tensor, array in zip(self.inputs, inputs, strict=True):
            halide = getattr(MNN, _HALIDE[array.dtype.name])
            tensor.copyFrom(MNN.Tensor(array.shape, halide, array, MNN.Tensor_DimensionType_Caffe))
        rc = self.interpreter.runSession(self.session)
        return rc, [self._read(t, host) for t, host in zip(self.outputs, self.host_outputs)]

    @staticmethod
    def _read(tensor: Any, host: Any) -> np.ndarray:
        if host is None:
            return tensor.getNumpyData()
        tensor.copyToHostTensor(host)
        return host.getNumpyData()
