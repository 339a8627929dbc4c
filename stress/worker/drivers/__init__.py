"""API drivers: the build stage of each MNN Python API, and the bindings its threads use.

An engine builds, on the worker's main thread, the MNN objects the threads share (as
``sharing`` says); ``bind`` gives each thread a ``stress.contract.stages.Binding`` that builds
the rest in its ``setup``. Bindings wrap every exception an MNN call raises in ``MNNError`` and keep
their own (harness) code outside those wrappers, so an ``MNNError`` is always MNN's doing and
any other exception is a bug of ours. Any call may kill the process; drivers never catch that.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from stress.contract.stages import Binding


class MNNError(Exception):
    """An MNN call raised: a finding about MNN (recorded as ``status = error``)."""

    @classmethod
    def wrap(cls, exc: BaseException) -> MNNError:
        """The exception as text, with its cause (pymnn's SystemErrors carry the real one)."""
        text = f"{type(exc).__name__}: {exc}"
        cause = exc.__cause__ or exc.__context__
        return cls(f"{text} (cause: {type(cause).__name__}: {cause})" if cause else text)


@dataclass(frozen=True)
class ModelSpec:
    """What every driver needs: the model, its inputs in the order ``feed`` takes them as
    (name, shape, dtype name), its outputs, and MNN's runtime config."""

    path: str
    inputs: list[tuple[str, list[int], str]]
    output_names: list[str]
    config: dict[str, Any]


class Engine(Protocol):
    def bind(self, thread: int) -> Binding:
        """A binding for one thread; its ``setup`` builds what the thread does not share."""
        ...

    def release(self) -> None:
        """Drop the MNN objects the threads share."""
        ...


def make_engine(params: dict[str, Any], spec: ModelSpec) -> Engine:
    """The engine of ``params['api']``, building what ``params['sharing']`` shares; the
    other factors it reads choose how its bindings feed and fetch."""
    if params["api"] == "session":
        from stress.worker.drivers.session import SessionEngine

        return SessionEngine(spec, params)
    if params["api"] == "module":
        from stress.worker.drivers.module import ModuleEngine

        return ModuleEngine(spec, params)
    raise ValueError(f"unknown api {params['api']!r}")


@contextmanager
def calling_mnn() -> Iterator[None]:
    """Around set-up calls of MNN: whatever they raise is MNN's, as an ``MNNError``. Keep
    harness code (allocations of ours) outside, and use plain try blocks in hot stages."""
    try:
        yield
    except MNNError:
        raise
    except Exception as exc:
        raise MNNError.wrap(exc) from exc
