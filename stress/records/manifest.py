"""RUN_DIR/manifest.json: what was run, where, with which versions, and how each variant ended.

Written at the start and at the end of a run; in between, state changes go to the journal
(``stress.records.journal``), which ``read_manifest`` folds in. ``read_records`` is for readers that
must go on when either file is damaged (``summary``, ``report``).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

from stress.errors import RunDirError
from stress.records.damage import DamagedPart
from stress.records.journal import JournalRead, read_journal
from stress.records.manifest_sections import (
    AdaptiveSection,
    DiskSection,
    NodeEntry,
    ReferenceEntry,
    Segment,
    checked,
)
from stress.records.nodes import cpu_info, installed
from stress.records.parts import write_atomically
from stress.records.rundir import RunLayout
from stress.records.states import RunStatus, VariantStatus

PACKAGES = (
    "mnn-stress",
    "MNN",
    "numpy",
    "pyarrow",
    "psutil",
    "click",
    "pydantic",
    "ruamel.yaml",
    "xxhash",
    "rich",
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def host_info() -> dict[str, Any]:
    cpu_model, flags = cpu_info()
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_flags": flags,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
    }


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        found[name] = installed(name)
    return found


@dataclass
class VariantEntry:
    """A variant's plan and where it stands: in the manifest, and in each journal line."""

    scenario: str
    label: str
    params: dict[str, Any]
    status: VariantStatus
    completed: int
    crashes: int
    next_iterations: list[int]  # per thread
    stop_iteration: int | None
    duration_s: float | None
    workers_started: int
    used_s: float = 0.0  # loop time used so far (a resumed run goes on from there)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantEntry:
        """Strict: an unknown or missing key raises TypeError (never a silent null). Runs made
        before threads existed wrote one ``next_iteration``: read as thread 0's."""
        if "next_iteration" in data and "next_iterations" not in data:
            data = {**data, "next_iterations": [data["next_iteration"]]}
            del data["next_iteration"]
        entry = cls(**data)
        entry.status = VariantStatus(entry.status)
        return checked(entry)


# In each ``scenarios`` entry: its model's origin and content when the run began
# (``stress.models.source.ModelSource``), which ``run --resume`` checks; absent in older runs
MODEL_SOURCE = "model_source"


@dataclass(frozen=True)
class Pause:
    """A stretch the coordinator did not run (``pauses`` in the manifest)."""

    at: str  # when it began (ISO time, UTC)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ManifestData:
    """Everything manifest.json holds. Unknown or missing keys are an error, not a null."""

    run_id: str
    command: list[str]
    cwd: str
    started: str
    ended: str | None
    status: RunStatus
    reason: str | None
    concurrency: int
    budget: dict[str, Any]
    test_fault: str | None
    owner: dict[str, Any]
    host: dict[str, Any]
    versions: dict[str, str | None]
    scenarios: list[dict[str, Any]]
    variants: dict[str, VariantEntry] = field(default_factory=dict)
    reference: dict[str, ReferenceEntry] = field(default_factory=dict)  # per scenario
    nodes: list[NodeEntry] = field(default_factory=list)  # the machines rows came from
    # One entry per coordinator that worked on the run (``run --resume`` adds one)
    segments: list[Segment] = field(default_factory=list)
    disk: DiskSection = field(default_factory=DiskSection)  # --max-disk
    adaptive: AdaptiveSection = field(default_factory=AdaptiveSection)
    # Times the coordinator itself did not run (stopped: SIGSTOP, Ctrl-Z, a debugger; or
    # starved) while its workers went on using their variants' time: ``Pause`` entries
    pauses: list[Pause] = field(default_factory=list)
    # Part files set aside as damaged (stress.records.damage): their rows are not read
    damaged: list[DamagedPart] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = self.status.value
        data["variants"] = {vid: entry.to_dict() for vid, entry in self.variants.items()}
        data["damaged"] = [part.to_dict() for part in self.damaged]
        data["pauses"] = [pause.to_dict() for pause in self.pauses]
        data["reference"] = {name: entry.to_dict() for name, entry in self.reference.items()}
        data["segments"] = [segment.to_dict() for segment in self.segments]
        data["nodes"] = [node.to_dict() for node in self.nodes]
        data["disk"] = self.disk.to_dict()
        data["adaptive"] = self.adaptive.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ManifestData:
        data = dict(data)
        data["status"] = RunStatus(data["status"])
        data["variants"] = {
            vid: VariantEntry.from_dict(entry) for vid, entry in data["variants"].items()
        }
        data["damaged"] = [DamagedPart.from_dict(part) for part in data.get("damaged", [])]
        data["pauses"] = [Pause(**pause) for pause in data.get("pauses", [])]
        data["reference"] = {
            name: ReferenceEntry.from_dict(entry)
            for name, entry in data.get("reference", {}).items()
        }
        data["segments"] = [Segment.from_dict(segment) for segment in data.get("segments", [])]
        data["nodes"] = [NodeEntry.from_dict(node) for node in data.get("nodes", [])]
        data["disk"] = DiskSection.from_dict(data.get("disk", {}))
        data["adaptive"] = AdaptiveSection.from_dict(data.get("adaptive", {}))
        return checked(cls(**data))


class Manifest:
    """manifest.json, written whole and atomically (hidden temporary file, then rename)."""

    def __init__(self, run_dir: Path, data: ManifestData) -> None:
        self.path = RunLayout(run_dir).manifest
        self.data = data

    def save(self) -> None:
        text = json.dumps(self.data.to_dict(), indent=2, default=str)
        write_atomically(self.path, lambda path: path.write_text(text))


def read_manifest(run_dir: Path) -> ManifestData:
    """The manifest with the journal folded in: each variant's latest state, and the run's
    final status where the journal has it and the manifest does not. RunDirError when
    manifest.json cannot be read; journal lines that cannot be read are skipped."""
    data = load_manifest(run_dir)
    fold_journal(data, run_dir)
    return data


def read_records(run_dir: Path) -> tuple[ManifestData | None, list[str]]:
    """``read_manifest`` for readers that go on without it: the manifest (None when it
    cannot be read) and what could not be read, in sentences."""
    try:
        data = load_manifest(run_dir)
    except RunDirError as exc:
        return None, [exc.message]
    problem = fold_journal(data, run_dir).problem()
    return data, [problem] if problem else []


def load_manifest(run_dir: Path) -> ManifestData:
    """manifest.json alone; RunDirError when it is missing, damaged or of another version."""
    try:
        return ManifestData.from_dict(json.loads(RunLayout(run_dir).manifest.read_bytes()))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RunDirError(
            f"cannot read {run_dir / 'manifest.json'}: {_why(exc)}",
            fix="pass a directory made by `mnn-stress run` (this version or later)",
        ) from exc


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, (KeyError, TypeError, AttributeError)):
        return f"not a manifest of this version ({exc})"
    return f"damaged ({exc})" if str(exc) else "damaged (empty)"


def fold_journal(data: ManifestData, run_dir: Path) -> JournalRead:
    """Each variant's latest journaled state into ``data``, and the run's status where the
    manifest is not final. Lines that would not fold are skipped (and counted)."""
    if data.status is not RunStatus.RUNNING:
        return JournalRead()  # the final manifest: the journal adds nothing to it
    found = read_journal(run_dir, _variant_line_ok, _run_line_ok)
    for variant_id, line in found.variants.items():
        if variant_id in data.variants:
            merged = {**data.variants[variant_id].to_dict(), **line}
            data.variants[variant_id] = VariantEntry.from_dict(merged)
    if found.run is not None:
        data.status, data.reason = RunStatus(found.run["run"]), found.run["reason"]
    return found


_ENTRY_KEYS = {f.name for f in fields(VariantEntry)} | {"next_iteration"}  # older runs: one


def _variant_line_ok(line: dict[str, Any]) -> bool:
    """A line ``VariantEntry.from_dict`` can fold: known keys, a known status."""
    if not set(line) <= _ENTRY_KEYS:
        return False
    return "status" not in line or line["status"] in {s.value for s in VariantStatus}


def _run_line_ok(line: dict[str, Any]) -> bool:
    return set(line) == {"ts", "run", "reason"} and line["run"] in {s.value for s in RunStatus}
