"""The typed sections of manifest.json: a segment per coordinator, the nodes rows came from,
the reference per scenario, the disk budget, the adaptive second pass.

Each is written to JSON as it always was (a key whose value is unknown yet is left out, as
before), and read back strictly: a key this version does not know is an error, never a
silently dropped fact.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from stress.records.states import RunStatus


def _present(data: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    """``data`` without the optional keys whose value is not known (None)."""
    return {k: v for k, v in data.items() if not (k in optional and v is None)}


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` checked against the fields of ``cls``: an unknown key is a TypeError."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise TypeError(f"{cls.__name__}: unknown key(s) {', '.join(unknown)}")
    return data


def checked(instance: Any) -> Any:
    """``instance`` (a dataclass read from JSON) with every field of the type its annotation
    says, where that is plain JSON (str, int, float, bool, None, lists and dicts of them): a
    TypeError names the field. Enums and nested records are converted by their readers."""
    for name, hint in _hints(type(instance)).items():
        value = getattr(instance, name)
        if not _conforms(value, hint):
            raise TypeError(
                f"{type(instance).__name__}.{name}: {type(value).__name__} {value!r:.40}"
            )
    return instance


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``; anything but plain JSON types is not checked here."""
    if hint is Any:
        return True
    if isinstance(hint, types.UnionType):
        return any(_conforms(value, part) for part in typing.get_args(hint))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_conforms(v, args[1]) for v in value.values())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (str, bool, type(None)):
        return isinstance(value, hint)
    return True  # an enum or a record: its reader converted it


def _apply(section: Any, change: dict[str, Any]) -> None:
    """Set the fields ``change`` names (strict: an unknown key is a TypeError)."""
    for key, value in _known(type(section), change).items():
        setattr(section, key, value)


@dataclass
class Segment:
    """One coordinator's part of a run (``run --resume`` adds one)."""

    started: str  # ISO time, UTC
    ended: str | None
    status: RunStatus
    reason: str | None
    owner: dict[str, Any]  # stress.records.rundir.Owner, as a dict
    command: list[str]
    iterations_rerun: int | None = None  # resumed: iterations in flight at the kill, run again
    # resumed: iterations of variants already done whose rows died with the killed coordinator
    # (a done variant is not run again for them)
    iterations_lost: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "status": self.status.value}
        return _present(data, ("iterations_rerun", "iterations_lost"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        known = _known(cls, data)
        return checked(cls(**{**known, "status": RunStatus(known["status"])}))


@dataclass
class NodeEntry:
    """A machine the run's rows came from: ``host`` as in the rows' and events' ``host``
    column, and its fingerprint (what may make its outputs legitimately differ)."""

    host: str
    hostname: str
    machine: str  # x86_64, aarch64, ...
    cpu_model: str | None
    kernel: str
    logical_cores: int | None
    mnn_version: str | None  # installed there (a variant's ``mnn_version`` may differ)
    ray_node_id: str | None = None  # a node of a Ray cluster (``run --ray``)
    address: str | None = None  # the node's address in its Ray cluster
    lost: str | None = None  # why the node was lost mid-run (its variants went on elsewhere)

    def to_dict(self) -> dict[str, Any]:
        return _present(asdict(self), ("ray_node_id", "address", "lost"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeEntry:
        return checked(cls(**_known(cls, data)))


@dataclass
class ReferenceEntry:
    """A scenario's clean reference pass: its variant, how it ended, and ONNX Runtime's run."""

    variant_id: str
    status: str  # a VariantStatus value
    completed: int
    crashes: int
    onnxruntime: str | None = None  # ``done``, ``not installed`` or why it failed

    def to_dict(self) -> dict[str, Any]:
        return _present(asdict(self), ("onnxruntime",))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceEntry:
        return checked(cls(**_known(cls, data)))


@dataclass
class DiskSection:
    """``run --max-disk``: the budget, what the run used, and when it acted on it."""

    budget_bytes: int | None = None
    used_bytes: int | None = None
    values_stopped_at: str | None = None  # ISO time: output values no longer stored
    stopped_at: str | None = None  # ISO time: the run stopped, its budget spent

    def to_dict(self) -> dict[str, Any]:
        return _present(asdict(self), tuple(f.name for f in fields(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiskSection:
        return checked(cls(**_known(cls, data)))

    def update(self, change: dict[str, Any]) -> None:
        """Apply a change a listener reports (``stress.records.recorder``)."""
        _apply(self, change)


@dataclass
class AdaptiveSection:
    """An adaptive night: the loop time pooled for the second pass, and once it is shared
    out, when and to which variants (per variant id: ``extra_s`` and ``why``)."""

    pool_s: float | None = None
    allocated_at: str | None = None  # ISO time
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = _present(asdict(self), ("pool_s", "allocated_at"))
        if self.allocated_at is None:
            del data["variants"]  # not shared out yet
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaptiveSection:
        return checked(cls(**_known(cls, data)))

    def update(self, change: dict[str, Any]) -> None:
        _apply(self, change)
