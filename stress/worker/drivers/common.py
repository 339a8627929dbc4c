"""What every driver shares: MNN's exceptions as ``MNNError``, the model as ``ModelSpec``, the
factor values it reads as ``DriverOptions``, the ``Engine`` protocol. Apart from
``stress.worker.drivers`` so that the drivers import it, not their package (which imports
them)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields
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
class DriverOptions:
    """The factor values a driver reads, built once from the variant's (``of``): which API,
    what the threads share, what each iteration builds anew, how inputs go in, which misuse,
    how long outputs are kept. A driver reads these, never ``params`` by name."""

    api: str
    sharing: str
    lifecycle: str
    input_path: str
    misuse: str
    output_lifetime: str

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> DriverOptions:
        """KeyError when ``params`` lacks one (params are complete: every factor is there)."""
        return cls(**{option.name: params[option.name] for option in fields(cls)})


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
