"""How a Session API thread hands its inputs to MNN: one feeder per ``input_path`` and per
``misuse``.

A feeder is ``feed(binding, inputs)``: it prepares any arrays of ours first (transposes,
packing: a failure there is the harness's) and then makes the MNN calls, whose exceptions the
binding records as MNN's. Facts verified on MNN 3.6.1 (see docs/factors.md): host tensors copy
the array and respect its strides; NHWC means channels-last at every rank of 3 or more; a
Caffe_C4 host tensor takes the NCHW shape with channels rounded up to a multiple of 4 and
the data packed as [N, C/4, H, W, 4]; ``getNumpyData()`` of a session input is a writable
view of the session's memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import MNN
import numpy as np

from stress.factors.misuse import UNKNOWN_NAME
from stress.worker.drivers.common import MNNError

CAFFE = MNN.Tensor_DimensionType_Caffe
TENSORFLOW = MNN.Tensor_DimensionType_Tensorflow
CAFFE_C4 = MNN.Tensor_DimensionType_Caffe_C4

Host = tuple[list[int], np.ndarray, Any]  # shape, data and dimension type of a host tensor
Feeder = Callable[[Any, list[np.ndarray]], None]


def as_nchw(array: np.ndarray) -> Host:
    return list(array.shape), array, CAFFE


def as_nhwc(array: np.ndarray) -> Host:
    """Channels last (rank 3 or more); lower ranks have no layout and go in as NCHW."""
    if array.ndim < 3:
        return as_nchw(array)
    data = np.ascontiguousarray(np.moveaxis(array, 1, -1))
    return list(data.shape), data, TENSORFLOW


def as_nc4hw4(array: np.ndarray) -> Host:
    """MNN's packed layout for 4-D inputs: channels in blocks of 4, zero-padded; other
    ranks go in as NCHW."""
    if array.ndim != 4:
        return as_nchw(array)
    n, c, h, w = array.shape
    blocks = -(-c // 4)
    padded = np.zeros((n, blocks * 4, h, w), array.dtype)
    padded[:, :c] = array
    packed = np.ascontiguousarray(padded.reshape(n, blocks, 4, h, w).transpose(0, 1, 3, 4, 2))
    return [n, blocks * 4, h, w], packed.reshape(n, blocks * 4, h, w), CAFFE_C4


def _copy_hosts(binding: Any, hosts: list[Host]) -> None:
    try:
        for tensor, halide, (shape, data, dimension) in zip(binding.inputs, binding.halide, hosts):
            tensor.copyFrom(MNN.Tensor(shape, halide, data, dimension))
    except Exception as exc:
        raise MNNError.wrap(exc) from exc


def _layout(convert: Callable[[np.ndarray], Host]) -> Feeder:
    def feed(binding: Any, inputs: list[np.ndarray]) -> None:
        _copy_hosts(binding, [convert(array) for array in inputs])

    return feed


def _per_input(call: Callable[[Any, np.ndarray], Any]) -> Feeder:
    """A feeder making one MNN call per (session input tensor, array)."""

    def feed(binding: Any, inputs: list[np.ndarray]) -> None:
        try:
            for tensor, array in zip(binding.inputs, inputs):
                call(tensor, array)
        except Exception as exc:
            raise MNNError.wrap(exc) from exc

    return feed


def _write_view(tensor: Any, array: np.ndarray) -> None:
    """Into the session input's ``getNumpyData()`` view (MNN's memory; numpy copies). A view
    whose shape does not take the array is MNN's answer, recorded as an error."""
    tensor.getNumpyData()[...] = array


# --- misuse: each one mistake, made on the default path -------------------------------------
def missing_input(binding: Any, inputs: list[np.ndarray]) -> None:
    """The last input is never given: the session runs on whatever its memory holds."""
    _copy_hosts(binding, [as_nchw(a) for a in inputs[:-1]])


def extra_input(binding: Any, inputs: list[np.ndarray]) -> None:
    """Every input, then one more under a name the model lacks."""
    _copy_hosts(binding, [as_nchw(a) for a in inputs])
    try:
        extra = binding.interpreter.mnn.getSessionInput(binding.session, UNKNOWN_NAME)
        extra.copyFrom(MNN.Tensor(list(inputs[0].shape), binding.halide[0], inputs[0], CAFFE))
    except Exception as exc:
        raise MNNError.wrap(exc) from exc


def wrong_rank(binding: Any, inputs: list[np.ndarray]) -> None:
    """Each input as a rank-1 host tensor of the same elements."""
    _copy_hosts(binding, [([a.size], a.reshape(-1), CAFFE) for a in inputs])


def wrong_dtype(binding: Any, inputs: list[np.ndarray]) -> None:
    """float64 data in host tensors of the input's type."""
    _copy_hosts(binding, [as_nchw(a.astype(np.float64)) for a in inputs])


FEEDERS: dict[str, Feeder] = {
    "tensor_copy": _layout(as_nchw),
    "nhwc": _layout(as_nhwc),
    "nc4hw4": _layout(as_nc4hw4),
    "host_write": _per_input(_write_view),
    "missing_input": missing_input,
    "extra_input": extra_input,
    "wrong_rank": wrong_rank,
    "wrong_dtype": wrong_dtype,
    # Tensor.fromNumpy on the session inputs instead of copyFrom
    "from_numpy": _per_input(lambda tensor, array: tensor.fromNumpy(array)),
    # copyFrom given the ndarray itself instead of an MNN.Tensor
    "bare_ndarray": _per_input(lambda tensor, array: tensor.copyFrom(array)),
    # MNN.Tensor(array) with no shape, type or layout, then copyFrom
    "untyped_tensor": _per_input(lambda tensor, array: tensor.copyFrom(MNN.Tensor(array))),
}


def feeder(input_path: str, misuse: str) -> Feeder:
    """A misuse's feeder, else the input path's (``unknown_output`` feeds normally)."""
    return FEEDERS.get(misuse, FEEDERS[input_path])
