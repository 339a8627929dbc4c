"""Planning: every variant of every scenario becomes a VariantState with its budget (the
command line's, else the scenario's), before anything runs."""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stress.errors import StressError
from stress.records.states import VariantStatus
from stress.scenario import LoadedScenario
from stress.scenario.variants import Variant, expand

if TYPE_CHECKING:
    from stress.coordinator.cluster.slots import ClusterRun

MIN_SHARE_S = 1.0


@dataclass(frozen=True)
class Budget:
    """Command-line overrides: iterations per variant, or a total duration for the whole run."""

    iterations: int | None = None
    duration_s: float | None = None


def overridden_budgets(scenarios: list[LoadedScenario], budget: Budget) -> str | None:
    """A line saying which scenarios' own budgets a command-line budget replaces (``--duration``
    is the whole run's time, ``duration:`` a variant's: the first silently replaced the
    second), or None when none is replaced."""
    if budget.iterations is None and budget.duration_s is None:
        return None
    own = [
        f"{s.spec.name} ({_own_budget(s)})"
        for s in scenarios
        if {"iterations", "duration"} & s.spec.model_fields_set
    ]
    if not own:
        return None
    given = (
        f"--iterations {budget.iterations} (per variant)"
        if budget.iterations is not None
        else f"--duration {budget.duration_s:g}s (the whole run, shared by its variants)"
    )
    shown = ", ".join(own[:4]) + (f" and {len(own) - 4} more" if len(own) > 4 else "")
    return f"{given} replaces the budgets the scenarios give: {shown}"


def _own_budget(scenario: LoadedScenario) -> str:
    spec = scenario.spec
    if spec.iterations is not None:
        return f"iterations: {spec.iterations}"
    return f"duration: {spec.duration:g}s per variant"


@dataclass
class VariantState:
    """Where a variant stands: the next iteration of each thread, its budget (iterations per
    thread, or loop time) and its crash count."""

    variant: Variant
    scenario: LoadedScenario
    stop_iteration: int | None
    duration_s: float | None  # iteration-loop time, summed over the variant's workers
    held_back_s: float = 0.0  # of its share, loop time pooled for a second pass not yet shared out
    second_pass: bool = False  # run again with more time (adaptive): its first pass is done
    next_iterations: list[int] = field(default_factory=list)  # per thread; set in __post_init__
    used_s: float = 0.0  # loop time of the variant's ended workers
    loop_started: float | None = None  # time.monotonic() of its running worker's hello
    outcomes: collections.Counter[int] = field(default_factory=collections.Counter)  # by Status
    # its fetched iterations by grade as the summary will say, counted as its rows are written
    grades: collections.Counter[str] = field(default_factory=collections.Counter)
    rss_bytes: int | None = None  # its running worker's resident memory, last reported
    ring_bytes: int = 0
    completed: int = 0
    crashes: int = 0
    workers_started: int = 0
    status: VariantStatus = VariantStatus.PENDING
    node: str | None = None  # the cluster node it runs on (``run --ray``), by its rows' host

    def __post_init__(self) -> None:
        if not self.next_iterations:
            self.next_iterations = [0] * self.variant.params.get("threads", 1)

    def used_so_far(self) -> float:
        """Loop time used, the running worker's included."""
        running = 0.0 if self.loop_started is None else time.monotonic() - self.loop_started
        return self.used_s + running

    def remaining_s(self) -> float | None:
        return None if self.duration_s is None else self.duration_s - self.used_s

    def has_iterations_left(self, thread: int) -> bool:
        """Whether ``thread`` is below the iteration budget (always, with a time budget)."""
        stop = self.stop_iteration
        return stop is None or self.next_iterations[thread] < stop

    def exhausted(self) -> bool:
        threads = range(len(self.next_iterations))
        if self.stop_iteration is not None and not any(map(self.has_iterations_left, threads)):
            return True
        remaining = self.remaining_s()
        return remaining is not None and remaining <= 0.01


def plan(
    scenarios: list[LoadedScenario],
    budget: Budget,
    concurrency: int,
    hosts: list[str] | None = None,
) -> list[VariantState]:
    """One state per variant with its budget: the command line's, else the scenario's; a
    cluster's ``hosts`` expand ``node: all``."""
    expanded = {s.spec.name: expand(s, hosts) for s in scenarios}
    variants = [(s, v) for s in scenarios for v in expanded[s.spec.name]]
    share = None
    if budget.duration_s is not None:  # the whole run's time, shared fairly by all variants
        usable = sum(
            min(s.spec.workers or concurrency, len(expanded[s.spec.name])) for s in scenarios
        )
        parallelism = max(1, min(concurrency, usable))  # each scenario's own cap counts
        share = budget.duration_s * parallelism / len(variants)
        _check_share(share, len(variants), parallelism)
    states = []
    for scenario, variant in variants:
        spec = scenario.spec
        iterations = budget.iterations or (None if share or spec.duration else spec.iterations)
        duration = share if share is not None else (None if budget.iterations else spec.duration)
        states.append(VariantState(variant, scenario, iterations, duration))
    return states


def _check_share(share: float, variants: int, parallelism: int) -> None:
    """Refuse a --duration that would give each variant less than MIN_SHARE_S."""
    if share >= MIN_SHARE_S:
        return
    needed = math.ceil(MIN_SHARE_S * variants / parallelism)
    raise StressError(
        f"--duration gives each of {variants} variants {share * 1000:.0f} ms of iterations; "
        f"each needs at least {MIN_SHARE_S:g} s, so this run needs --duration {needed}s or "
        f"more ({parallelism} variants at a time)",
        key="--duration",
        fix="give a longer --duration, fewer variants, or --iterations",
    )


@dataclass(frozen=True)
class RunSetup:
    """Everything decided before the run directory is made."""

    run_id: str
    scenarios: list[LoadedScenario]
    states: list[VariantState]
    concurrency: int
    budget: Budget
    fault: str | None
    reference: bool = True
    first_worker_id: int = 0  # a resumed run's workers go on from its earlier ones
    max_disk: int | None = None  # bytes the run directory may use (--max-disk)
    pool_s: float = 0.0  # loop time kept back for the second pass (stress.coordinator.adaptive)
    cluster: ClusterRun | None = None  # run --ray: the variants run on the cluster's nodes
