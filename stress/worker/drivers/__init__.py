"""API drivers: the build stage of each MNN Python API, and the bindings its threads use.

An engine builds, on the worker's main thread, the MNN objects the threads share (as
``sharing`` says); ``bind`` gives each thread a ``stress.contract.stages.Binding`` that builds
the rest in its ``setup``. Bindings wrap every exception an MNN call raises in ``MNNError`` and keep
their own (harness) code outside those wrappers, so an ``MNNError`` is always MNN's doing and
any other exception is a bug of ours. Any call may kill the process; drivers never catch that.
"""

from __future__ import annotations

from stress.worker.drivers.common import DriverOptions, MNNError, ModelSpec, calling_mnn
from stress.worker.drivers.common import Engine as Engine

__all__ = ["DriverOptions", "Engine", "MNNError", "ModelSpec", "calling_mnn", "make_engine"]


def make_engine(options: DriverOptions, spec: ModelSpec) -> Engine:
    """The engine of ``options.api``, building what ``options.sharing`` shares; the other
    options choose how its bindings feed and fetch."""
    if options.api == "session":
        from stress.worker.drivers.session import SessionEngine

        return SessionEngine(spec, options)
    if options.api == "module":
        from stress.worker.drivers.module import ModuleEngine

        return ModuleEngine(spec, options)
    raise ValueError(f"unknown api {options.api!r}")
