"""Python threads in a worker, what they share, and the lock their caller holds.

Each thread runs its own iteration loop and records its own rows (``thread`` column). MNN's
contract (alibaba/MNN#592): an Interpreter may be shared if createSession, getSessionInput,
getSessionOutput and resize are serialised by the caller; a Session must not be shared.
``caller_lock`` obeys the contract (``setup``) or serialises every iteration (``all``). Its
layer is the outermost of the factors' (last in the registry), so it covers theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stress.contract.stages import Binding, Layer, ThreadContext
from stress.factors.factor import Factor, Rule, allowed_per_api

SHARING = {
    "session": ("own", "interpreter", "session"),
    "module": ("own", "module", "clone"),
}


def _sharing_needs_threads(params: Mapping[str, Any]) -> str | None:
    if params["sharing"] != "own" and params["threads"] == 1:
        return f"sharing={params['sharing']} needs threads > 1: one thread shares nothing"
    return None


def _lock_needs_threads(params: Mapping[str, Any]) -> str | None:
    if params["caller_lock"] != "none" and params["threads"] == 1:
        return f"caller_lock={params['caller_lock']} needs threads > 1: one thread never waits"
    return None


class LockedSetup(Layer):
    """The caller's lock around the thread's set-up and each ``begin`` (where a ``lifecycle``
    builds new sessions): createSession, getSessionInput/Output and resize, MNN's documented
    contract for a shared Interpreter."""

    def __init__(self, inner: Binding, context: ThreadContext) -> None:
        super().__init__(inner)
        self.lock = context.shared_lock("caller_lock")

    def setup(self) -> None:
        with self.lock:
            self.inner.setup()

    def begin(self) -> None:
        with self.lock:
            self.inner.begin()


class LockedAll(LockedSetup):
    """The caller's lock around set-up and each whole iteration: every MNN call runs under it
    and no other thread's call comes between a thread's feed, run and fetch (a serialised
    control)."""

    def iteration(self, inputs: list[Any]) -> tuple[int, list[Any]]:
        with self.lock:
            return self.inner.iteration(inputs)

    def end(self) -> None:
        with self.lock:
            self.inner.end()


def _wrap_lock(value: str, binding: Binding, context: ThreadContext) -> Binding:
    if value == "setup":
        return LockedSetup(binding, context)
    if value == "all":
        return LockedAll(binding, context)
    return binding


THREADS = Factor(
    name="threads",
    kind=int,
    default=1,
    minimum=1,
    maximum=64,
    doc="Python threads in the worker, each calling inference in its own loop and recording "
    "its own rows (column 'thread'); iteration budgets are per thread.",
)

SHARING_FACTOR = Factor(
    name="sharing",
    kind=str,
    default="own",
    choices=("own", "interpreter", "session", "module", "clone"),
    doc="What the threads share. Session API: own (an Interpreter and session each), "
    "interpreter (one Interpreter, a session each), session (one session: against MNN's "
    "contract). Module API: own (a module each), module (one module), clone (one module, "
    "clone()d per thread).",
    rules=(
        allowed_per_api("sharing", SHARING),
        Rule(("sharing", "threads"), _sharing_needs_threads),
    ),
)

CALLER_LOCK = Factor(
    name="caller_lock",
    kind=str,
    default="none",
    choices=("none", "setup", "all"),
    doc="A lock the calling threads hold: none; setup (around createSession, "
    "getSessionInput/Output and resize, as MNN documents for a shared Interpreter); "
    "all (around every MNN call, each iteration's as one: a serialised control).",
    wrap=_wrap_lock,
    rules=(Rule(("caller_lock", "threads"), _lock_needs_threads),),
)

FACTORS = (THREADS, SHARING_FACTOR)
LOCK_FACTORS = (CALLER_LOCK,)  # registered last: its layer wraps every other layer
