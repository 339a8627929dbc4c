"""Where a night's time goes: a first fair pass, then the rest to the variants still uncertain.

With a time budget, each variant of a scenario with ``adaptive: true`` (the default) first gets
FIRST_PASS of its fair share; the other part of every share goes into a pool. Once every
variant has had its first pass, the pool goes to variants whose failure rate is still
uncertain, in proportion to the width of its 95 % Wilson interval:

- failures seen but the rate imprecise (the interval wider than a quarter of the rate);
- no failure seen, but too few iterations to rule out 1 % (rule of three: fewer than 300).

Variants known clean (0 of 300 or more) or known to fail at a precise rate (every time, say)
get nothing more; when every variant is known, the pool is shared evenly. Failures are what
the coordinator sees live: iterations that raised or returned an error code, and deaths.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stress.analysis.rates import wilson
from stress.analysis.verdicts import Grade
from stress.contract.protocol import Status
from stress.coordinator.plan import MIN_SHARE_S, VariantState
from stress.records.states import VariantStatus

FIRST_PASS = 0.5
RULED_OUT = 0.01  # a clean variant is known once its rule-of-three bound is below this
PRECISE = 0.25  # a failing variant is known once its interval is narrower than this x rate
MIN_EXTRA_S = 2.0  # a second-pass share smaller than this is not worth a worker's start


@dataclass(frozen=True)
class Extra:
    """More loop time for one variant, and why."""

    state: VariantState
    seconds: float
    why: str


def split_first_pass(states: list[VariantState]) -> float:
    """Cut each eligible variant's time budget to its first pass; the pooled rest (seconds of
    loop time). A variant too short to split keeps its whole share."""
    pool = 0.0
    for state in states:
        share = state.duration_s
        if not state.scenario.spec.adaptive or share is None:
            continue
        if share * FIRST_PASS < MIN_SHARE_S:
            continue
        state.duration_s = share * FIRST_PASS
        state.held_back_s = share - state.duration_s
        pool += state.held_back_s
    return pool


def _timed(state: VariantState) -> bool:
    """Whether the variant takes part: opted in, with a time budget (one that runs a number
    of iterations has no use for more time)."""
    return state.scenario.spec.adaptive and state.duration_s is not None


def failures(state: VariantState) -> tuple[int, int]:
    """(failed, tried): iterations graded as failing so far (a mismatch, NaN, error code or
    raise, as the summary grades them), plus deaths. Without live grades (none yet, or they
    stopped): iterations that raised or returned an error code, plus deaths."""
    graded = sum(state.grades.values())
    if graded:
        bad = sum(n for grade, n in state.grades.items() if not Grade(grade).passing)
        return bad + state.crashes, graded + state.crashes
    bad = state.outcomes[Status.INVALID] + state.outcomes[Status.ERROR] + state.crashes
    return bad, state.completed + state.crashes


def uncertainty(state: VariantState) -> tuple[float, str]:
    """How much more iterations would tell (0: nothing), and why, in words."""
    bad, tried = failures(state)
    if tried == 0:
        return 1.0, "no iteration yet"
    low, high = wilson(bad, tried)
    if bad == 0:
        bound = 3 / tried
        if bound <= RULED_OUT:
            return 0.0, f"known clean: 0 of {tried:,} (< {bound:.2%})"
        return high - low, f"0 of {tried:,} cannot rule out {RULED_OUT:.0%} yet (< {bound:.1%})"
    rate = bad / tried
    shown = f"{bad:,} of {tried:,} failed ({rate:.2%}, 95 % CI {low:.2%}-{high:.2%})"
    if high - low <= PRECISE * rate:
        return 0.0, f"known: {shown}"
    return high - low, f"imprecise: {shown}"


def allocate(states: list[VariantState], pool: float, parallelism: int) -> list[Extra]:
    """The pool shared out after the first pass: an Extra for every eligible variant (0 s for
    those left out), each with the reason. The second pass may not outlast its share of the
    wall clock (pool / parallelism), so no variant gets more than that; what the uncertain
    variants cannot use goes evenly to the known ones, and what none can use is left."""
    eligible = [s for s in states if _timed(s) and s.status is VariantStatus.DONE]
    judged = [(s, *uncertainty(s)) for s in eligible]
    uncertain = sorted((j for j in judged if j[1] > 0), key=lambda j: -j[1])
    known = [j for j in judged if j[1] == 0]
    cap = pool / max(1, parallelism)
    chosen = uncertain[: max(1, math.floor(pool / MIN_EXTRA_S))]
    extra = _fill({id(s): weight for s, weight, _ in chosen}, pool, cap)
    rest = pool - sum(extra.values())
    extra.update(_fill({id(s): 1.0 for s, _, _ in known}, rest, cap))
    extras = []
    for state, _, why in judged:
        seconds = extra.get(id(state), 0.0)
        extras.append(Extra(state, seconds if seconds >= MIN_EXTRA_S else 0.0, why))
    return extras


def _fill(weights: dict[int, float], pool: float, cap: float) -> dict[int, float]:
    """``pool`` shared in proportion to ``weights``, none above ``cap`` (water-filling)."""
    given: dict[int, float] = {}
    open_ = dict(weights)
    while open_ and pool > 1e-9:
        total = sum(open_.values())
        share = {key: pool * weight / total for key, weight in open_.items()}
        full = {key for key, seconds in share.items() if seconds >= cap}
        if not full:
            given.update(share)
            break
        for key in full:
            given[key] = cap
            pool -= cap
            del open_[key]
    return given


def second_pass(
    pool: float,
    parallelism: int,
    note: Callable[[str], None],
    record: Callable[[dict[str, Any]], None],
) -> Callable[[list[VariantState]], list[VariantState]]:
    """The coordinator's ``on_pass_done``: share ``pool`` out, say why in the run's log and
    ``record`` it for the manifest; the variants to run again, their budgets raised."""

    def run_again(states: list[VariantState]) -> list[VariantState]:
        extras = allocate(states, pool, parallelism)
        given = [e for e in extras if e.seconds > 0]
        used = sum(e.seconds for e in given)
        for state in states:
            state.held_back_s = 0.0  # shared out now: what is not given is not run
        unused = f"; {pool - used:,.0f} s of it go unused" if pool - used >= 1 else ""
        note(
            f"adaptive: all {len(extras)} variants have had their first pass; of the "
            f"{pool:,.0f} s of iterations held back for a second pass, {used:,.0f} s go to the "
            f"{len(given)} whose failure rate is still the least certain{unused}"
        )
        for extra in given:
            extra.state.duration_s = (extra.state.duration_s or 0.0) + extra.seconds
            variant = extra.state.variant
            note(f"  +{extra.seconds:.1f} s {variant.variant_id} {variant.label}: {extra.why}")
        left = collections.Counter(_kind(e.why) for e in extras if not e.seconds)
        if left:
            kinds = ", ".join(f"{n} {k}" for k, n in left.items())
            note(f"adaptive: no second pass for the other variants ({kinds})")
        record(
            {
                "allocated_at": time.time(),
                "variants": {
                    e.state.variant.variant_id: {"extra_s": round(e.seconds, 3), "why": e.why}
                    for e in extras
                },
            }
        )
        return [e.state for e in given]

    return run_again


def _kind(why: str) -> str:
    if why.startswith("known clean"):
        return "known clean"
    return "known failing" if why.startswith("known:") else "still uncertain (no time left)"
