"""API drivers: one small interface, one implementation per MNN Python API.

A driver owns its MNN objects. ``infer`` hands the inputs to MNN, runs inference and returns
the return code with MNN's *own* output views, valid only until the next ``infer``: the
caller must copy them at once. Any call may kill the process; drivers never catch that.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Driver(Protocol):
    def infer(self, inputs: list[np.ndarray]) -> tuple[int, list[np.ndarray]]:
        """Run once; returns (rc, outputs as MNN-owned views in model output order)."""
        ...


def make_driver(
    api: str,
    model_path: str,
    config: dict[str, Any],
    inputs: list[tuple[str, list[int]]],
    output_names: list[str],
) -> Driver:
    """A driver for ``api``; ``inputs`` are (name, shape) in the order ``infer`` takes them."""
    if api == "session":
        from stress.drivers.session import SessionDriver

        return SessionDriver(model_path, config, inputs, output_names)
    if api == "module":
        from stress.drivers.module import ModuleDriver

        return ModuleDriver(model_path, config, inputs, output_names)
    raise ValueError(f"unknown api {api!r}")
