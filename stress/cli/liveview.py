"""What a run looks like while it runs: per scenario, variants finished, iterations and
their rate, their grades as the summary will give them (counted as rows are written) and
deaths; per node of a cluster (``run --ray``), variants running, iterations, rate and deaths;
for the run, elapsed and remaining time, the coordinator's and the workers' memory, and the
disk used. Drawn live on a terminal (rich), or as one plain line for logs and pipes."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
from rich.console import Group
from rich.table import Table
from rich.text import Text

from stress.analysis.verdicts import Grade
from stress.records.states import VariantStatus

GRADED = "iterations graded against the clean reference as their rows are written"
UNGRADED = "ungr: no reference, or not graded live; the summary grades every row"


@dataclass
class Meters:
    """The run's figures at one tick; the rates come from the previous tick."""

    elapsed_s: float
    remaining_s: float | None
    coordinator_rss: int
    workers_rss: int
    workers: int
    disk_used: int | None
    disk_limit: int | None
    rates: dict[str, float] = field(default_factory=dict)  # iterations/s per scenario
    node_rates: dict[str, float] = field(default_factory=dict)  # iterations/s per node


class Rates:
    """Iterations per second per scenario (or per what ``key`` says), over the last few ticks
    (from the start at first)."""

    def __init__(
        self, window: int = 5, key: Callable[[Any], str | None] = lambda s: s.variant.scenario
    ) -> None:
        self.key = key
        self.history: collections.deque[tuple[float, dict[str, int]]] = collections.deque(
            [(0.0, {})], maxlen=window + 1
        )

    def update(self, elapsed_s: float, states: list[Any]) -> dict[str, float]:
        totals: dict[str, int] = collections.Counter()
        for state in states:
            name = self.key(state)
            if name is not None:
                totals[name] += state.completed
        self.history.append((elapsed_s, dict(totals)))
        (then, before), (now, after) = self.history[0], self.history[-1]
        span = now - then
        return {name: (after[name] - before.get(name, 0)) / span if span else 0.0 for name in after}


def remaining(states: list[Any], elapsed_s: float) -> float | None:
    """Time left for the whole run, from the share of each variant's budget used so far,
    the time held back for a second pass counted in (None: unknown yet)."""
    fractions = [_done(state) for state in states]
    done = sum(fractions) / len(fractions) if fractions else 1.0
    if done <= 0.0 or elapsed_s <= 0.0:
        return None
    return max(0.0, elapsed_s * (1.0 - done) / done)


def _done(state: Any) -> float:
    if state.status.finished and not state.held_back_s:
        return 1.0
    if state.duration_s:
        return min(1.0, state.used_so_far() / (state.duration_s + state.held_back_s))
    if state.stop_iteration:
        total = state.stop_iteration * len(state.next_iterations)
        return min(1.0, sum(state.next_iterations) / total)
    return 0.0


def meters(
    states: list[Any],
    elapsed_s: float,
    rates: Rates,
    disk: tuple[int | None, int | None],
    node_rates: Rates | None = None,
) -> Meters:
    """The figures at this tick; ``node_rates`` keeps each node's rate (a cluster run)."""
    running = [s for s in states if s.rss_bytes is not None]
    return Meters(
        elapsed_s=elapsed_s,
        remaining_s=remaining(states, elapsed_s),
        coordinator_rss=psutil.Process().memory_info().rss,
        workers_rss=sum(s.rss_bytes for s in running),
        workers=len(running),
        disk_used=disk[0],
        disk_limit=disk[1],
        rates=rates.update(elapsed_s, states),
        node_rates=node_rates.update(elapsed_s, states) if node_rates is not None else {},
    )


def first_passes(states: list[Any]) -> int:
    """Variants whose first pass is over: never fewer than at the last tick, though a second
    pass sets some running again."""
    return sum(s.status.finished or s.second_pass for s in states)


def _second_pass(states: list[Any]) -> str:
    again = [s for s in states if s.second_pass]
    if not again:
        return ""
    return f", second pass {sum(s.status.finished for s in again)}/{len(again)} finished"


def plain_line(states: list[Any], m: Meters) -> str:
    """The run in one line: for logs, pipes and cron mail."""
    running = sum(s.status is VariantStatus.RUNNING for s in states)
    grades = _grades(states)
    graded = ", ".join(f"{grades[g]:,} {g.value}" for g in _shown(grades))
    return (
        f"variants {first_passes(states)}/{len(states)} finished{_second_pass(states)}, "
        f"{running} running; "
        f"{sum(s.completed for s in states):,} iterations ({sum(m.rates.values()):,.0f}/s; "
        f"graded: {graded}); {sum(s.crashes for s in states)} worker deaths; {_footer(m)}"
        + "".join(
            f"; {node}: {running} running, {iterations:,} iterations "
            f"({m.node_rates.get(node, 0):,.0f}/s), {deaths} deaths"
            for node, (running, iterations, deaths) in nodes(states).items()
        )
    )


def nodes(states: list[Any]) -> dict[str, tuple[int, int, int]]:
    """Per cluster node (none on one machine): variants running, iterations, deaths."""
    found: dict[str, list[int]] = {}
    for state in states:
        if state.node is None:
            continue
        counts = found.setdefault(state.node, [0, 0, 0])
        counts[0] += state.status is VariantStatus.RUNNING
        counts[1] += state.completed
        counts[2] += state.crashes
    return {node: (a, b, c) for node, (a, b, c) in sorted(found.items())}


def table(states: list[Any], m: Meters) -> Group:
    """The live view: one row per scenario, then the run's figures."""
    view = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("scenario", "variants", "running", "iters", "it/s"):  # 80 columns wide
        view.add_column(name, justify="left" if name == "scenario" else "right")
    shown = _shown(_grades(states))
    for grade in shown:
        view.add_column(grade.short, justify="right")
    view.add_column("deaths", justify="right")
    by_scenario: dict[str, list[Any]] = collections.defaultdict(list)
    for state in states:
        by_scenario[state.variant.scenario].append(state)
    for name, group in by_scenario.items():
        grades = _grades(group)
        deaths = sum(s.crashes for s in group)
        view.add_row(
            name,
            f"{first_passes(group)}/{len(group)}",
            str(sum(s.status is VariantStatus.RUNNING for s in group)),
            f"{sum(s.completed for s in group):,}",
            f"{m.rates.get(name, 0.0):,.0f}",
            *(_count(grades[g], not g.passing) for g in shown),
            _count(deaths, True),
        )
    footer = _footer(m) + _second_pass(states)
    legend = [Text(GRADED, style="dim")]
    if Grade.UNGRADED in shown:
        legend.append(Text(UNGRADED, style="dim"))
    return Group(view, *_node_table(states, m), Text(footer, style="dim"), *legend)


def _node_table(states: list[Any], m: Meters) -> list[Table]:
    """A cluster run's nodes, one row each (nothing on one machine)."""
    counted = nodes(states)
    if not counted:
        return []
    view = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("node", "running", "iters", "it/s", "deaths"):
        view.add_column(name, justify="left" if name == "node" else "right")
    for node, (running, iterations, deaths) in counted.items():
        rate = f"{m.node_rates.get(node, 0.0):,.0f}"
        view.add_row(node, str(running), f"{iterations:,}", rate, _count(deaths, True))
    return [view]


def _grades(states: list[Any]) -> collections.Counter[Grade]:
    total: collections.Counter[Grade] = collections.Counter()
    for state in states:
        for word, count in state.grades.items():
            total[Grade(word)] += count
    return total


def _shown(grades: collections.Counter[Grade]) -> list[Grade]:
    """The grades seen so far, best first; exact always (a column that fills as rows come)."""
    return [g for g in Grade if grades[g] or g is Grade.EXACT]


def _count(value: int, alarming: bool) -> Text:
    return Text(f"{value:,}", style="bold red" if alarming and value else "")


def _footer(m: Meters) -> str:
    left = "?" if m.remaining_s is None else _clock(m.remaining_s)
    disk = "disk ?" if m.disk_used is None else f"disk {_mib(m.disk_used)}"
    if m.disk_limit:
        disk += f" of {_mib(m.disk_limit)}"
    return (
        f"elapsed {_clock(m.elapsed_s)}, about {left} left; coordinator {_mib(m.coordinator_rss)}, "
        f"{m.workers} workers {_mib(m.workers_rss)}; {disk}"
    )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"
