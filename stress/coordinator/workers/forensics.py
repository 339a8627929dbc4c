"""Native stacks of dead and hung workers, read by gdb in the background (coordinator side).

A worker that dies by a signal leaves a core file in a folder of its own (its working
directory, where the kernel's ``core_pattern`` "core" puts it); gdb reads every thread's
backtrace from it and the core is deleted. A hung worker is attached to before it is killed.
Without gdb, or where the kernel hands cores to a program (``|/usr/lib/systemd/...``), events
keep the Python stacks only and say why.

gdb takes seconds under load and may itself fail, die or hang, so it never runs inside the
coordinator's loop: a ``Reading`` is a gdb process writing into files (never a pipe that could
fill), polled by the loop and killed at its deadline; what it ends with is the truth about the
stack: the backtraces, or how gdb failed. gdb is started through a launcher that asks Linux to
SIGKILL it when the coordinator dies, so a killed run leaves no gdb behind.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Generic, TypeVar

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
MAX_STACK_BYTES = 64 << 10
MAX_OUTPUT_BYTES = 4 << 20  # what is read of gdb's output before picking out the frames
GDB_TIMEOUT_S = 60.0
TIMEOUT_VAR = "MNN_STRESS_GDB_TIMEOUT_S"  # how long one gdb may take, in seconds
STDERR_TAIL_BYTES = 600
MAX_READINGS = 2  # gdb reading cores at once
MAX_WAITING = 8  # readings queued behind them
_GDB = ["-batch", "-nx", "-ex", "set pagination off", "-ex", "thread apply all bt 40"]
NO_CORE = "no core file was written (the worker's core size limit, or the kernel)"
# Signals whose default action writes a core (signal(7)); any other leaves none.
_DUMPS_CORE = {"SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGSEGV"}
_DUMPS_CORE |= {"SIGXCPU", "SIGXFSZ", "SIGSYS"}
# The launcher: dies with the coordinator (PR_SET_PDEATHSIG survives exec), then becomes gdb.
_LAUNCH = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGKILL)
if os.getppid() != int(sys.argv[1]):
    sys.exit(0)
os.execvp(sys.argv[2], sys.argv[2:])
"""


@functools.cache
def unavailable() -> str | None:
    """Why native stacks cannot be had here, or None when they can."""
    if not shutil.which("gdb"):
        return "gdb is not installed (apt-get install gdb): Python stacks only"
    try:
        pattern = CORE_PATTERN.read_text().strip()
    except OSError:
        pattern = "core"
    if pattern.startswith("|") or "/" in pattern:
        return (
            f"the kernel hands core files elsewhere (core_pattern {pattern!r}): Python stacks "
            "only for crashes; set it to 'core' (sysctl kernel.core_pattern=core) for native ones"
        )
    return None


def timeout_s() -> float:
    """How long one gdb may take: ``$MNN_STRESS_GDB_TIMEOUT_S``, else GDB_TIMEOUT_S."""
    try:
        return max(0.1, float(os.environ[TIMEOUT_VAR]))
    except (KeyError, ValueError):
        return GDB_TIMEOUT_S


class Reading:
    """One gdb on ``subject`` in the background, once ``start``ed; ``core`` (ours) is deleted
    when done."""

    def __init__(self, subject: str, target: list[str], core: Path | None = None) -> None:
        self.subject, self.core, self.target = subject, core, target
        self.out: IO[bytes] | None = None
        self.err: IO[bytes] | None = None
        self.started = self.deadline = 0.0
        self.ended_at: float | None = None
        self.why_killed: str | None = None  # set when we killed it: its deadline, or a stop
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Reading:
        """Start gdb, in a session of its own (a terminal's Ctrl-C, meant for the run, does
        not reach it) through the launcher that dies with the coordinator."""
        # Files, not pipes: gdb never blocks on a full pipe while the loop is elsewhere.
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 - closed by result()
        self.err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by result()
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s()
        pid = str(os.getpid())
        launch = [sys.executable, "-S", "-c", _LAUNCH, pid, "gdb", *_GDB, *self.target]
        try:
            self.process = subprocess.Popen(
                launch,
                stdin=subprocess.DEVNULL,
                stdout=self.out,
                stderr=self.err,
                start_new_session=True,
            )
        except OSError as exc:
            self.why_killed = f"could not be started: {exc}"
            self.ended_at = self.started
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def is_started(self) -> bool:
        return self.started > 0

    def finished(self) -> bool:
        """Whether gdb is done (never waits): it exited, or it was killed at its deadline.
        A reading not started yet is not done."""
        if not self.is_started:
            return False
        if self.process is None or self.process.poll() is not None:
            self.ended_at = self.ended_at or time.monotonic()
            return True
        if time.monotonic() < self.deadline:
            return False
        self._kill(f"timed out after {self.deadline - self.started:g} s")
        return True

    def stop(self, why: str) -> str:
        """Kill gdb now (if still at work) and say what it got; one never started says so."""
        if not self.is_started:
            return self.dropped(f"gdb was never started on {self.subject}: {why}")
        if self.process is not None and self.process.poll() is None:
            self._kill(f"was stopped after {time.monotonic() - self.started:.1f} s: {why}")
        return self.result()

    def dropped(self, why: str) -> str:
        """Give the reading up unstarted: its core is deleted; ``why`` is the stack's text."""
        self._delete_core()
        return why

    def result(self) -> str:
        """Every thread's backtrace, or how gdb failed (its stderr's tail, and the frames it
        printed before, if any). Call once gdb is done; frees its files and the core."""
        assert self.out is not None and self.err is not None
        out, err = _head(self.out, MAX_OUTPUT_BYTES), _tail(self.err, STDERR_TAIL_BYTES)
        self._delete_core()
        frames = "\n".join(ln for ln in out.splitlines() if ln.startswith(("#", "Thread ")))
        failure = self._failure(frames)
        if failure is None:
            return _bounded(frames)
        tail = err.strip()
        note = f"{failure}; gdb's stderr: {tail}" if tail else failure
        return _bounded(f"{note}\n{frames}" if frames else note)

    def _delete_core(self) -> None:
        with contextlib.suppress(OSError):
            if self.core is not None:
                self.core.unlink()

    def _failure(self, frames: str) -> str | None:
        """How gdb failed, or None when it read the stacks."""
        what = f"gdb reading {self.subject}"
        if self.why_killed is not None:
            return f"{what} {self.why_killed}"
        assert self.process is not None
        code, took = self.process.returncode, self._took()
        if code < 0:
            return f"{what} died of {_signal_name(-code)} after {took:.1f} s"
        if code > 0:
            return f"{what} failed: exit status {code} after {took:.1f} s"
        return None if frames else f"{what} printed no backtrace ({took:.1f} s)"

    def _took(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started

    def _kill(self, why: str) -> None:
        assert self.process is not None
        self.why_killed = why
        self.process.kill()
        self.process.wait()
        self.ended_at = time.monotonic()


def read_core(folder: Path, python: str, signal_name: str) -> Reading | str:
    """Start reading the core that a death by ``signal_name`` left in ``folder`` (moved out
    of it first, so the folder can go at once), or say why there is none."""
    cores = sorted(folder.glob("core*"))
    for extra in cores[1:]:
        with contextlib.suppress(OSError):
            extra.unlink()
    if not cores:
        return NO_CORE if signal_name in _DUMPS_CORE else f"{signal_name} leaves no core file"
    kept = folder.parent / f"{folder.name}.core"
    try:
        cores[0].rename(kept)
        size = kept.stat().st_size
    except OSError as exc:
        return f"the core file could not be kept for gdb: {exc}"
    return Reading(f"the core file ({size / (1 << 20):.1f} MiB)", [python, str(kept)], kept)


def remove_stale_cores(*cores_dirs: Path) -> int:
    """Delete the cores a killed coordinator left waiting for gdb (``<worker>.core`` beside
    the workers' folders): their deaths' events say gdb was reading them. Returns how many."""
    stale = [core for folder in cores_dirs for core in folder.glob("*.core")]
    for core in stale:
        with contextlib.suppress(OSError):
            core.unlink()
    return len(stale)


def attach(pid: int) -> Reading:
    """Start reading every thread's backtrace of a running (hung) process, gdb attached."""
    return Reading(f"the hung worker (pid {pid})", ["-p", str(pid)]).start()


def reading_note(reading: Reading) -> str:
    """What a death's event says of its native stack while gdb reads it (or waits to): the
    backtrace follows in a ``native_stack`` event, unless its coordinator dies first."""
    return (
        f"gdb was reading {reading.subject} when this event was written: its backtrace is "
        "in a later native_stack event of this worker (if none, the coordinator was killed "
        "before gdb was done)"
    )


T = TypeVar("T")


@dataclass
class Pending(Generic[T]):
    """Readings of cores, each with what waits for its stack (an event): at most
    MAX_READINGS gdb at once (each takes a core's worth of memory and a CPU from the workers
    under test), at most MAX_WAITING more queued (each holds a core on disk)."""

    items: list[tuple[T, Reading]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, waiting: T, reading: Reading) -> str | None:
        """Queue ``reading`` (started as soon as a gdb is free); or, in a crash storm that
        already fills the queue, give it up and return what its stack says instead."""
        if len(self.items) >= MAX_READINGS + MAX_WAITING:
            return reading.dropped(
                f"not read: {len(self.items)} gdb readings were already at work or waiting "
                "(a crash storm); the core file was deleted"
            )
        self.items.append((waiting, reading))
        self._start_next()
        return None

    def ready(self) -> list[tuple[T, str]]:
        """Those whose gdb is done, with their stacks (never waits); the next ones started."""
        done, waiting = [], []
        for item in self.items:
            (done if item[1].finished() else waiting).append(item)
        self.items = waiting
        self._start_next()
        return [(item, reading.result()) for item, reading in done]

    def stop_all(self, why: str) -> list[tuple[T, str]]:
        """Every one, gdb killed where still at work."""
        items, self.items = self.items, []
        return [(item, reading.stop(why)) for item, reading in items]

    def _start_next(self) -> None:
        running = sum(1 for _, r in self.items if r.is_started)
        for _, reading in self.items:
            if running >= MAX_READINGS:
                return
            if not reading.is_started:
                reading.start()
                running += 1


def _head(file: IO[bytes], limit: int) -> str:
    with file:
        file.seek(0)
        return file.read(limit).decode(errors="replace")


def _tail(file: IO[bytes], limit: int) -> str:
    with file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - limit))
        return file.read().decode(errors="replace")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _bounded(text: str) -> str:
    if len(text) <= MAX_STACK_BYTES:
        return text
    return text[:MAX_STACK_BYTES] + "\n[... cut]"
