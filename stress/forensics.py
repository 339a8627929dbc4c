"""Native stacks of dead and hung workers, read by gdb (coordinator side).

A worker that dies by a signal leaves a core file in a folder of its own (its working
directory, where the kernel's ``core_pattern`` "core" puts it); gdb reads every thread's
backtrace from it and the core is deleted. A hung worker is attached to before it is killed.
Without gdb, or where the kernel hands cores to a program (``|/usr/lib/systemd/...``), events
keep the Python stacks only and say why.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from pathlib import Path

CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
MAX_STACK_BYTES = 64 << 10
GDB_TIMEOUT_S = 60
_GDB = ["-batch", "-nx", "-ex", "set pagination off", "-ex", "thread apply all bt 40"]


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


def from_core(folder: Path, python: str) -> str | None:
    """Every thread's backtrace from the core left in ``folder`` (then deleted), or None."""
    cores = sorted(folder.glob("core*"))
    try:
        return _bounded(_gdb([python, str(cores[0])])) if cores else None
    finally:
        for core in cores:
            with contextlib.suppress(OSError):
                core.unlink()


def from_live(pid: int) -> str | None:
    """Every thread's backtrace of a running (hung) process, gdb attached for a moment."""
    return _bounded(_gdb(["-p", str(pid)]))


def _gdb(target: list[str]) -> str | None:
    try:
        done = subprocess.run(
            ["gdb", *_GDB, *target],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=GDB_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    frames = [line for line in done.stdout.splitlines() if line.startswith(("#", "Thread "))]
    return "\n".join(frames) or None


def _bounded(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_STACK_BYTES:
        return text
    return text[:MAX_STACK_BYTES] + "\n[... cut]"
