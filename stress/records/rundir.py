"""A run directory: created once, owned by one coordinator at a time, with room kept back.

The owner holds an exclusive lock (``RUN_DIR/.lock``, flock) for the whole run, so a second
run into the same ``--out`` is refused instead of interleaving with the first. The manifest
records who the owner is (pid, process start time, boot id, host), so a reader can tell a run
that is still going from one whose coordinator was killed. A reserve file (``.reserve``) holds
space back; it is deleted when the disk fills, to make room for the last rows, the events and
the final manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import psutil

from stress.errors import RunDirError, StorageError

_WORKER_LOG = re.compile(r".*-w(\d+)\.log")


@dataclass(frozen=True)
class RunLayout:
    """Every file and folder of a run directory, named here and nowhere else. The clean
    reference pass is laid out the same, inside it (``reference``); every module asks this
    for a path instead of joining names of its own."""

    root: Path
    MANIFEST: ClassVar[str] = "manifest.json"  # the names messages give, besides the paths
    JOURNAL: ClassVar[str] = "journal.jsonl"

    @property
    def manifest(self) -> Path:
        """What was run and how each variant ended (``stress.records.manifest``)."""
        return self.root / self.MANIFEST

    @property
    def journal(self) -> Path:
        """Every state change, appended as it happens (``stress.records.journal``)."""
        return self.root / self.JOURNAL

    @property
    def run_log(self) -> Path:
        """What the run said while it ran, with the time (``stress.cli.narrate``)."""
        return self.root / "run.log"

    @property
    def iterations(self) -> Path:
        """The iterations dataset: Parquet parts of ``stress.records.schema``."""
        return self.root / "iterations"

    @property
    def events(self) -> Path:
        """The events dataset: Parquet parts of ``stress.records.events``."""
        return self.root / "events"

    @property
    def datasets(self) -> tuple[Path, Path]:
        return self.iterations, self.events

    @property
    def damaged(self) -> Path:
        """Damaged parts set aside, one folder per dataset (``stress.records.damage``)."""
        return self.root / "damaged"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def cores(self) -> Path:
        return self.root / "cores"

    @property
    def lock(self) -> Path:
        """Held (flock) by the coordinator that owns the run."""
        return self.root / ".lock"

    @property
    def reserve(self) -> Path:
        """Space kept back to end a run cleanly when the disk fills."""
        return self.root / ".reserve"

    @property
    def reference(self) -> RunLayout:
        """The clean reference pass, laid out as a run inside the run."""
        return RunLayout(self.root / "reference")

    @property
    def onnxruntime(self) -> Path:
        """ONNX Runtime's outputs, one ``SCENARIO.npz`` each (``reference/onnxruntime/``)."""
        return self.reference.root / "onnxruntime"

    def all_datasets(self) -> list[Path]:
        """Every Parquet dataset of a run: its own and its reference pass's."""
        return [*self.datasets, *self.reference.datasets]

    def worker_log(self, variant_id: str, worker_id: int) -> Path:
        """Where a worker's stderr goes: ``logs/VARIANT-wN.log``."""
        return self.logs / f"{variant_id}-w{worker_id}.log"

    def core_dir(self, variant_id: str, worker_id: int) -> Path:
        """Where a worker's core file lands: ``cores/VARIANT-wN/``."""
        return self.cores / f"{variant_id}-w{worker_id}"

    def worker_ids(self) -> list[int]:
        """The ids of the workers whose logs are here."""
        found = (_WORKER_LOG.fullmatch(log.name) for log in self.logs.glob("*-w*.log"))
        return [int(match[1]) for match in found if match]


RESERVE_BYTES = 4 << 20
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_WRITABLE = "choose a writable --out directory"


@dataclass(frozen=True)
class Owner:
    """The coordinator process that owns a run directory."""

    pid: int
    start_time: float  # the process's start, seconds since the epoch (psutil.create_time)
    boot_id: str | None
    hostname: str

    @classmethod
    def current(cls) -> Owner:
        return cls(os.getpid(), psutil.Process().create_time(), _boot_id(), socket.gethostname())

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def alive(self) -> bool | None:
        """True when this process still runs; False when it is gone (or its pid was reused, or
        the machine rebooted); None when it ran on another host and cannot be checked."""
        if self.hostname != socket.gethostname():
            return None
        if self.boot_id and _boot_id() and self.boot_id != _boot_id():
            return False
        try:
            process = psutil.Process(self.pid)
            return (
                abs(process.create_time() - self.start_time) < 1.0
                and process.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            return False


def _resolved(path: Path) -> Path:
    """``path`` made absolute, symlinks followed (a symlink loop is a RunDirError)."""
    try:
        return path.expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: a symlink loop before Python 3.13
        raise RunDirError(f"cannot resolve {path}: {exc}", fix="fix the symlink") from exc


def _check_unused(path: Path, shown: str) -> None:
    """A new run goes only into an empty folder (or one holding just an interrupted start's
    lock and reserve): never among other files, nor over another run."""
    if RunLayout(path).manifest.exists():
        raise RunDirError(
            f"{shown} already holds a run",
            fix=f"choose a new --out directory, or go on with that run: "
            f"mnn-stress run --resume {path}",
        )
    try:
        layout = RunLayout(path)
        kept = (layout.lock.name, layout.reserve.name)
        others = sorted(p.name for p in path.iterdir() if p.name not in kept)
    except OSError as exc:
        raise RunDirError(f"cannot list {path}: {exc.strerror}", fix=_WRITABLE) from exc
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise RunDirError(
            f"{shown} is not empty ({listed}) and is not an mnn-stress run directory",
            fix="give --out a new or empty directory; a run never writes among other files",
        )


def _boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return None


class RunDir:
    """An open, locked run directory. Use ``RunDir.create``; ``close`` releases the lock."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self.layout = RunLayout(path)
        self._lock_fd = lock_fd

    @classmethod
    def create(cls, path: Path) -> RunDir:
        """Make (or take over an empty) ``path`` for a new run, symlinks resolved (``.path``
        is where the run really goes); RunDirError when it cannot be written, holds a run
        already, holds anything else, or another run is using it right now."""
        given, path = path, _resolved(path)
        shown = str(path) if given.absolute() == path else f"{path} (where {given} leads)"
        if path.is_dir() and not RunLayout(path).lock.exists():
            _check_unused(path, shown)  # a folder of other files is refused untouched
        run_dir = cls._locked(path, make=True)
        try:
            _check_unused(path, shown)  # once locked: no other run is writing it now
        except RunDirError:
            run_dir.close()
            raise
        run_dir._reserve()
        return run_dir

    @classmethod
    def reopen(cls, path: Path) -> RunDir:
        """Take back ``path``, a run directory whose coordinator stopped or died, to resume
        it; RunDirError when it holds no run or its coordinator is still at work."""
        path = _resolved(path)
        if not RunLayout(path).manifest.is_file():
            raise RunDirError(
                f"{path} holds no run (no {RunLayout.MANIFEST})",
                fix="pass the run directory of an interrupted or killed run",
            )
        run_dir = cls._locked(path, make=False)
        run_dir._reserve()
        return run_dir

    @classmethod
    def _locked(cls, path: Path, make: bool) -> RunDir:
        try:
            if make:
                path.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(RunLayout(path).lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise RunDirError(
                f"cannot {'create' if make else 'open'} {path}: {exc.strerror}",
                fix=_WRITABLE,
            ) from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(lock_fd)
            raise RunDirError(
                f"{path} is in use by another mnn-stress run",
                fix="wait for it to finish, or choose another --out directory",
            ) from exc
        return cls(path, lock_fd)

    def _reserve(self) -> None:
        reserve = self.layout.reserve
        try:
            fd = os.open(reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                reserve.unlink()
            self.close()
            raise RunDirError(
                StorageError.of(exc, reserve).message,
                file=str(self.path),
                fix=f"mnn-stress keeps {RESERVE_BYTES >> 20} MiB back to end a run cleanly "
                "when the disk fills: free space there, or choose another --out",
            ) from exc

    def release_reserve(self) -> None:
        """Give the reserved space back, for the last writes of a run whose disk is full."""
        with contextlib.suppress(OSError):
            self.layout.reserve.unlink()

    def close(self) -> None:
        """Delete the reserve and release the lock (also done by the kernel if we die)."""
        self.release_reserve()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def next_worker_id(*layouts: RunLayout) -> int:
    """One past the highest worker id with a log in any of ``layouts``: a resumed run's
    workers never reuse a log, a core folder or a ``worker_id``."""
    return max((i for layout in layouts for i in layout.worker_ids()), default=-1) + 1
