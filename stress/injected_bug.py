"""Test-only: an exception mnn-stress does not expect, raised where ``MNN_STRESS_TEST_BUG``
says, to prove that a bug is reported as one (exit 70, a traceback file, a failed run) and
never as a finding. Like ``MNN_STRESS_TEST_FAULT`` (``stress.worker.faults``), only the
environment can ask for it; no option or scenario key can."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from stress.errors import StressError

ENV_VAR = "MNN_STRESS_TEST_BUG"
# command: as any command starts (its arguments parsed); run-start: once a run's directory
# and manifest exist, outside the coordinator; run-loop: inside the coordinator's loop, with
# workers running (its first tick)
PLACES = ("command", "run-start", "run-loop")

Hook = TypeVar("Hook", bound=Callable[..., None])


class InjectedBug(RuntimeError):
    """The exception raised: a RuntimeError, as a real bug would be, not a StressError."""


def raise_if_asked(place: str) -> None:
    asked = os.environ.get(ENV_VAR)
    if not asked:
        return
    if asked not in PLACES:
        raise StressError(f"{ENV_VAR}={asked!r} is none of {', '.join(PLACES)}", key=ENV_VAR)
    if asked == place:
        raise InjectedBug(f"injected test bug at {place} ({ENV_VAR})")


def before(place: str, hook: Hook) -> Hook:
    """``hook``, raising first when asked to at ``place``."""

    def hooked(*args, **kwargs) -> None:
        raise_if_asked(place)
        hook(*args, **kwargs)

    return hooked  # type: ignore[return-value]
