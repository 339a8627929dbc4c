"""API drivers: one small interface, one implementation per MNN Python API.

A driver owns its MNN objects. ``infer`` hands the inputs to MNN, runs inference and returns
the return code with output arrays valid only until the next ``infer``: the caller must copy
them at once. Drivers wrap every exception an MNN call raises in ``MNNError`` and keep their
own (harness) code outside those wrappers, so an ``MNNError`` is always MNN's doing and any
other exception is a bug of ours. Any call may kill the process; drivers never catch that.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class MNNError(Exception):
    """An MNN call raised: a finding about MNN (recorded as ``status = error``)."""

    @classmethod
    def wrap(cls, exc: BaseException) -> MNNError:
        """The exception as text, with its cause (pymnn's SystemErrors carry the real one)."""
        text = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__ or exc.__context__
        return cls(f"{text} (cause: {type(cause).__name__}: {cause})" if cause else text)


class Driver(Protocol):
    def infer(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        """Run once; returns (rc, outputs in model output order), or raises MNNError."""
        ...


def make_driver(
    api: str,
    model_path: str,
    config: dict[str, Any],
    inputs: list[tuple[str, list[int], str]],
    output_names: list[str],
) -> Driver:
    """A driver for ``api``; ``inputs`` are (name, shape, dtype name) in the order ``infer``
    takes them."""
    if api == "session":
        from stress.drivers.session import SessionDriver

        return SessionDriver(model_path, config, inputs, output_names)
    if api == "module":
        from stress.drivers.module import ModuleDriver

        return ModuleDriver(model_path, config, inputs, output_names)
    raise ValueError(f"unknown api {api!r}")
