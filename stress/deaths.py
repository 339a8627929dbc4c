"""How a worker ended, in words: the classification behind every event record.

A worker that ends without its ``done`` message died: by a signal (``crash``), by an
exception outside an MNN call (``exception``), with a non-zero exit code (``exit``), killed by
the coordinator for making no progress (``hang``) or for writing an unreadable record
(``protocol``). A worker stopped because the run is stopping was ``interrupted``, and one whose
record did not fit its ring asks for a ``resize``: neither is the variant's fault.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Any

DEATH_KINDS = ("crash", "hang", "exception", "exit", "protocol")
_STACK_START = re.compile(r"^(Current thread|Thread) 0x", re.M)


@dataclass(frozen=True)
class Ending:
    kind: str  # done, resize, interrupted, or one of DEATH_KINDS
    signal: str | None = None
    message: str = ""

    @property
    def is_death(self) -> bool:
        return self.kind in DEATH_KINDS


def signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:  # real-time signals have no name
        return f"SIG{-returncode}"


def classify(
    returncode: int,
    killed_for: str | None,
    messages: dict[str, dict[str, Any]],
    timeout: float,
    stopping: bool,
) -> Ending:
    """What ``returncode`` and the worker's last messages say about how it ended."""
    name = signal_name(returncode)
    error = messages.get("error")
    if returncode == 0 and "done" in messages and killed_for is None:
        if messages["done"].get("stopped") and not stopping:
            return Ending(
                "interrupted",
                None,
                "stopped by a SIGTERM from outside mnn-stress; "
                "the variant continues in a new worker",
            )
        return Ending("done")
    if killed_for == "hang":
        return Ending("hang", name, f"no progress for {timeout:g}s; killed")
    if killed_for == "protocol":
        return Ending("protocol", name, f"unreadable record: {messages['protocol']['message']}")
    if killed_for == "stop" or (stopping and name == "SIGTERM"):
        return Ending("interrupted", name, "stopped while the run was stopping")
    if error and error.get("needed"):
        return Ending("resize", None, f"{error['message']}; restarting with a larger ring")
    if error:
        return Ending("exception", name, f"{error['exception']}: {error['message']}")
    if name:
        return Ending("crash", name, f"worker died of {name}")
    return Ending("exit", None, f"worker exited with code {returncode}")


def python_stack(log_text: str) -> str | None:
    """The faulthandler dump (fatal error or SIGUSR1 request) in a worker's log tail, if any."""
    fatal = log_text.rfind("Fatal Python error")
    if fatal >= 0:
        return log_text[fatal:].strip()
    match = _STACK_START.search(log_text)
    return log_text[match.start() :].strip() if match else None
