"""How a worker ended, in words: the classification behind every event record.

A worker that ends without its ``done`` message died: by a signal (``crash``), by an MNN call
raising outside an iteration (``exception``), with a non-zero exit code (``exit``), killed by
the coordinator for making no progress (``hang``) or for writing an unreadable record
(``protocol``). An exception in our own code is a ``harness`` error: never counted as MNN's.
A worker stopped because the run is stopping was ``interrupted``, and one whose record did not
fit its ring asks for a ``resize``: neither is the variant's fault.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from enum import Enum

from stress.contract.protocol import EXIT_HARNESS_SETUP, Done, Failure
from stress.records.events import EventKind

_STACK_START = re.compile(r"^(Current thread|Thread) 0x", re.M)


class KillReason(str, Enum):
    """Why the coordinator killed a worker."""

    HANG = "hang"
    MEMORY = "memory"
    PROTOCOL = "protocol"
    STOP = "stop"


@dataclass(frozen=True)
class Ending:
    kind: EventKind | None  # None: the worker finished its job normally
    signal: str | None = None
    message: str = ""

    @property
    def is_death(self) -> bool:
        return self.kind is not None and self.kind.is_death


def signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:  # real-time signals have no name
        return f"SIG{-returncode}"


@dataclass(frozen=True)
class LastWords:
    """What the coordinator knows of a worker's end: its messages and its own actions."""

    returncode: int
    killed_for: KillReason | None
    done: Done | None
    failure: Failure | None
    protocol_error: str | None = None
    oom_killed: bool = False  # the kernel's OOM killer acted in the worker's memory cgroup


# Whose exception ended a worker: MNN's, or the memory it could not get (both findings).
_FAILURE_KINDS = {"mnn": EventKind.EXCEPTION, "memory": EventKind.MEMORY}


def classify(last: LastWords, timeout: float, stopping: bool) -> Ending:
    """What the exit status and the worker's last messages say about how it ended."""
    name = signal_name(last.returncode)
    failure = last.failure
    if last.returncode == 0 and last.done is not None and last.killed_for is None:
        if last.done.stopped and not stopping:
            return Ending(
                EventKind.INTERRUPTED,
                None,
                "stopped by a SIGTERM from outside mnn-stress; "
                "the variant continues in a new worker",
            )
        return Ending(None)
    if last.killed_for is KillReason.HANG:
        return Ending(EventKind.HANG, name, f"no progress for {timeout:g}s; killed")
    if last.killed_for is KillReason.MEMORY:
        return Ending(EventKind.MEMORY, name, "resident memory over max_rss_mib; killed")
    if last.oom_killed and name == "SIGKILL":
        return Ending(
            EventKind.MEMORY, name, "killed by the kernel's OOM killer at cgroup_memory_max_mib"
        )
    if last.killed_for is KillReason.PROTOCOL:
        return Ending(EventKind.PROTOCOL, name, f"unreadable record: {last.protocol_error}")
    if last.killed_for is KillReason.STOP or (stopping and name == "SIGTERM"):
        return Ending(EventKind.INTERRUPTED, name, "stopped while the run was stopping")
    if failure and failure.ring_bytes_needed:
        return Ending(EventKind.RESIZE, None, f"{failure.message}; restarting with a larger ring")
    if failure:
        kind = _FAILURE_KINDS.get(failure.origin, EventKind.HARNESS)
        return Ending(kind, name, f"{failure.exception}: {failure.message}")
    if name:
        return Ending(EventKind.CRASH, name, f"worker died of {name}")
    if last.returncode == EXIT_HARNESS_SETUP:
        return Ending(EventKind.HARNESS, None, "the worker could not read its job or map its ring")
    return Ending(EventKind.EXIT, None, f"worker exited with code {last.returncode}")


def python_stack(log_text: str) -> str | None:
    """The faulthandler dump (fatal error or SIGUSR1 request) in a worker's log tail, if any."""
    fatal = log_text.rfind("Fatal Python error")
    if fatal >= 0:
        return log_text[fatal:].strip()
    match = _STACK_START.search(log_text)
    return log_text[match.start() :].strip() if match else None
