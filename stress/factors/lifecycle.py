"""How long MNN objects live: reused for every iteration, or built anew each iteration.

``session_per_iteration`` is the pattern of the original user report: a new session every
iteration on one Interpreter, created with ``saveTensors`` and a runtime from
``Interpreter.createRuntime``. Python has no ``releaseSession``: the sessions live until the
Interpreter does, so the worker's RSS grows (visible in ``rss_bytes``). The drivers renew
the objects in the ``begin`` stage of each iteration, so a caller's lock covers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stress.factors.factor import Factor, Rule, allowed_per_api

LIFECYCLES = {
    "session": ("reuse", "session_per_iteration", "interpreter_per_iteration"),
    "module": ("reuse", "module_per_iteration"),
}
RENEWS = {  # the level each lifecycle builds anew before every iteration
    "session_per_iteration": "session",
    "interpreter_per_iteration": "interpreter",
    "module_per_iteration": "module",
}
# A thread cannot renew what it shares with others: the lowest shared level per sharing.
_SHARED = {
    "interpreter": "interpreter",
    "session": "session",
    "module": "module",
    "clone": "module",
}


def _lifecycle_fits_sharing(params: Mapping[str, Any]) -> str | None:
    renewed, shared = RENEWS.get(params["lifecycle"]), _SHARED.get(params["sharing"])
    if renewed is None or shared is None:
        return None
    if params["sharing"] == "interpreter" and renewed == "session":
        return None  # a new session per iteration on a shared Interpreter: MNN allows it
    return (
        f"lifecycle={params['lifecycle']} with sharing={params['sharing']}: a thread cannot "
        f"build anew the {shared} it shares with the others"
    )


LIFECYCLE = Factor(
    name="lifecycle",
    kind=str,
    default="reuse",
    choices=("reuse", "session_per_iteration", "interpreter_per_iteration", "module_per_iteration"),
    doc="Session API: reuse one session; a new session every iteration on the same "
    "Interpreter (with saveTensors and a createRuntime runtime); a new Interpreter and session "
    "every iteration. Module API: reuse, or a module loaded every iteration.",
    rules=(
        allowed_per_api("lifecycle", LIFECYCLES),
        Rule(("lifecycle", "sharing"), _lifecycle_fits_sharing),
    ),
)

FACTORS = (LIFECYCLE,)
