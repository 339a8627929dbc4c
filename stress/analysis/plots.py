"""The report's plots as inline SVG (matplotlib, Agg): failure rates, latency and RSS over time,
differences from the reference, worker deaths over time. Each returns None when there is
nothing to draw. Time series are read batch by batch and thinned per worker, so a night of
10 million rows never sits in memory; they are drawn against the variant's own running time,
so a second pass follows the first without the hours between them."""

from __future__ import annotations

import io
import re
from itertools import product
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.dataset as ds  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from stress.analysis.dataset import events_table, read_iterations  # noqa: E402
from stress.analysis.grading import PASSING  # noqa: E402
from stress.analysis.pyrows import python_rows  # noqa: E402
from stress.analysis.summary_model import OutcomeRate, VariantSummary  # noqa: E402
from stress.analysis.ticks import Decimals, clock_x, duration_unit, log_x, power_of_ten  # noqa: E402
from stress.records.events import DEATH_KINDS  # noqa: E402

POINTS_PER_WORKER = 2000
POINTS_PER_VARIANT = 8000  # many short workers (fresh_worker_every) share this
MIN_POINTS_PER_WORKER = 20
FEW_POINTS = 100  # a worker with this many points or fewer has each one marked
MOST_ROWS = 30  # variants (or variant outcomes) one plot shows; the rest are counted
# Labels are data: never mathtext (a '$' in a label would be parsed, or fail).
_STYLE = {"text.parse_math": False, "font.size": 8, "svg.fonttype": "none"}
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_KIND_MARKERS = {"crash": "X", "hang": "s", "memory": "^", "exception": "o"}
_KIND_MARKERS |= {"exit": "D", "protocol": "v"}
_GRADE_COLOURS = {"close": "tab:blue", "mismatch": "tab:red"}
# by whether max|diff| is a lower bound (graded by min/max/mean): marker, words in the legend
_BOUND_MARKERS = {False: ("o", ""), True: (">", ", a lower bound (values not stored)")}
RUNNING_TIME = "running time of the variant (only while one of its workers iterated)"


def name(variant: VariantSummary) -> str:
    return f"{variant.scenario} {variant.label}"


def _svg(figure: Figure) -> str:
    """The figure as an <svg> element for inline use (no XML prolog, comments or metadata)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata=_NO_METADATA)
    plt.close(figure)
    text = buffer.getvalue()
    text = re.sub(r"<!--.*?-->", "", text[text.index("<svg") :], flags=re.DOTALL)
    return text


def _figure(rows: int) -> tuple[Figure, Any]:
    """One axes, tall enough for ``rows`` labelled rows."""
    return plt.subplots(figsize=(13.0, max(1.6, 0.9 + rows * 0.24)), layout="constrained")


def failing_rates(variant: VariantSummary) -> list[tuple[str, OutcomeRate]]:
    """The variant's outcomes that failed at least once: (outcome, rate), highest first."""
    found = [(k, r) for k, r in variant.rates.items() if k not in PASSING and r.count]
    return sorted(found, key=lambda item: -item[1].rate)


def failure_rates(variants: list[VariantSummary]) -> str | None:
    """Failure rate per variant and outcome with its 95 % Wilson interval, highest first."""
    found = [(name(v), k, r) for v in variants for k, r in failing_rates(v) if r.n]
    if not found:
        return None
    found.sort(key=lambda item: -item[2].rate)
    shown = found[:MOST_ROWS][::-1]
    with plt.rc_context(_STYLE):
        figure, axes = _figure(len(shown))
        rate = np.array([r.rate for _, _, r in shown])
        # Clipped: a Wilson bound can miss a rate of 0 or 1 by a rounding error.
        low = np.maximum(rate - np.array([r.low for _, _, r in shown]), 0)
        high = np.maximum(np.array([r.high for _, _, r in shown]) - rate, 0)
        axes.errorbar(rate, range(len(shown)), xerr=[low, high], fmt="o", color="tab:red")
        axes.set_yticks(range(len(shown)), [f"{n}: {k}" for n, k, _ in shown])
        if rate.max() / max(rate.min(), 1e-12) > 100:
            log_x(axes, Decimals("%", scale=100, each=True))
        else:
            axes.xaxis.set_major_formatter(Decimals("%", scale=100))
        axes.set_xlabel("failure rate (95 % Wilson interval)")
        axes.grid(axis="x", alpha=0.3)
        _note_left_out(axes, len(found) - len(shown))
        return _svg(figure)


def _note_left_out(axes: Any, count: int) -> None:
    if count > 0:
        axes.set_title(f"(and {count} more not shown)", loc="right", fontsize=7)


def differences(variants: list[VariantSummary]) -> str | None:
    """Largest absolute difference of each distinct inexact output, marker area by rows; where
    it is only a lower bound (graded by min/max/mean, values not stored), the marker says so."""
    shown = [v for v in variants if v.grades.close or v.grades.mismatch]
    shown = shown[:MOST_ROWS][::-1]
    points = [
        (row, o.max_abs, o.rows, o.grade, o.basis == "statistics")
        for row, v in enumerate(shown)
        for o in v.inexact_outputs
        if o.grade in _GRADE_COLOURS and o.max_abs and np.isfinite(o.max_abs)
    ]
    if not points:
        return None
    with plt.rc_context(_STYLE):
        figure, axes = _figure(len(shown))
        largest = max(p[2] for p in points)
        for (grade, colour), (bound, (marker, words)) in product(
            _GRADE_COLOURS.items(), _BOUND_MARKERS.items()
        ):
            mine = [p for p in points if p[3] == grade and p[4] == bound]
            if mine:
                rows, max_abs, counts, _, _ = zip(*mine)
                sizes = 12 + 60 * np.sqrt(np.array(counts) / largest)
                axes.scatter(
                    max_abs, rows, s=sizes, c=colour, alpha=0.6, marker=marker, label=grade + words
                )
        axes.set_yticks(range(len(shown)), [name(v) for v in shown])
        axes.set_ylim(-0.7, len(shown) - 0.3)
        log_x(axes, power_of_ten)
        axes.set_xlabel("max |difference| from the reference (marker area: rows)")
        axes.grid(axis="x", alpha=0.3)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        return _svg(figure)


def crash_timeline(run_dir: Path, variants: list[VariantSummary]) -> str | None:
    """Worker deaths over wall-clock time (UTC), one row per variant, a marker per kind."""
    table = events_table(
        run_dir, columns=["variant_id", "kind", "ts"], filter=pc.field("kind").isin(DEATH_KINDS)
    )
    if table.num_rows == 0:
        return None
    names = {v.variant_id: name(v) for v in variants}
    counts = table.group_by("variant_id").aggregate([("kind", "count")]).to_pylist()
    counts.sort(key=lambda row: (-row["kind_count"], row["variant_id"]))
    rows = {row["variant_id"]: i for i, row in enumerate(counts[:MOST_ROWS][::-1])}
    with plt.rc_context(_STYLE):
        figure, axes = _figure(len(rows))
        deaths = [e for e in python_rows(table) if e["variant_id"] in rows]
        for kind in DEATH_KINDS:
            picked = [e for e in deaths if e["kind"] == kind]
            if picked:
                times = [e["ts"].replace(tzinfo=None) for e in picked]
                where = [rows[e["variant_id"]] for e in picked]
                axes.scatter(times, where, marker=_KIND_MARKERS[kind], s=36, label=kind)
        axes.set_yticks(list(rows.values()), [names.get(v, v) for v in rows])
        axes.set_ylim(-0.7, len(rows) - 0.3)
        clock_x(axes, [e["ts"].replace(tzinfo=None) for e in deaths])
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _note_left_out(axes, len(counts) - len(rows))
        return _svg(figure)


def time_series(run_dir: Path, variants: list[VariantSummary]) -> str | None:
    """Latency and RSS of each worker over the variant's running time, one row of two panels
    per variant."""
    if not variants:
        return None
    limits = {v.variant_id: _limit(v) for v in variants}
    series = read_iterations(run_dir, lambda dataset: thinned_series(dataset, limits))
    if not series:
        return None
    with plt.rc_context(_STYLE):
        figure, grid = plt.subplots(
            len(variants),
            2,
            figsize=(13, 0.6 + 1.7 * len(variants)),
            layout="constrained",
            squeeze=False,
        )
        for (latency, rss), variant in zip(grid, variants):
            _plot_workers(latency, rss, variant, series)
        grid[-1][0].set_xlabel(RUNNING_TIME)
        grid[-1][1].set_xlabel(RUNNING_TIME)
        return _svg(figure)


def _limit(variant: VariantSummary) -> int:
    """Points per worker: POINTS_PER_WORKER, less when many workers share the variant's."""
    share = POINTS_PER_VARIANT // max(variant.workers, 1)
    return max(MIN_POINTS_PER_WORKER, min(POINTS_PER_WORKER, share))


def _plot_workers(latency: Any, rss: Any, variant: VariantSummary, series: dict) -> None:
    workers = sorted(w for v, w in series if v == variant.variant_id)
    mine = [series[variant.variant_id, worker] for worker in workers]
    seconds = running_seconds([ts for ts, _, _ in mine])
    per_unit, unit = duration_unit(max((float(s.max()) for s in seconds), default=0.0))
    for worker, x, (_, latency_ms, rss_mib) in zip(workers, seconds, mine):
        dots = {"marker": ".", "ms": 2} if len(x) <= FEW_POINTS else {}  # sparse: show each
        latency.plot(x / per_unit, latency_ms, lw=0.8, label=f"worker {worker}", **dots)
        rss.plot(x / per_unit, rss_mib, lw=0.8, **dots)
    flags = ", ".join(variant.drift.flags if variant.drift else [])
    latency.set_title(name(variant) + (f"  [{flags}]" if flags else ""), loc="left", fontsize=8)
    latency.set_ylabel("latency")
    latency.yaxis.set_major_formatter(Decimals("ms"))
    rss.set_ylabel("RSS")
    rss.yaxis.set_major_formatter(Decimals("MiB"))
    for axes in (latency, rss):
        axes.xaxis.set_major_formatter(Decimals(unit))
        axes.grid(axis="x", alpha=0.3)
    if 1 < len(workers) <= 8:
        latency.legend(fontsize=6, frameon=False, ncols=min(len(workers), 4))


def running_seconds(times: list[np.ndarray]) -> list[np.ndarray]:
    """Each worker's start times as seconds of the variant's own running: from its first
    iteration on, counting only while one of its workers iterated. The time between its
    workers (a second pass hours after the first, a replacement starting) is left out."""
    if not times:
        return []  # none of the variant's rows could be read (damaged parts)
    spans = sorted((ts.min(), ts.max()) for ts in times)
    starts, ends = [spans[0][0]], [spans[0][1]]
    for start, end in spans[1:]:
        if start <= ends[-1]:  # overlapping workers: one span
            ends[-1] = max(ends[-1], end)
        else:
            starts.append(start)
            ends.append(end)
    begin, lengths = np.array(starts), np.array(ends) - np.array(starts)
    before = np.concatenate([[np.timedelta64(0, "ns")], np.cumsum(lengths)[:-1]])
    found = [np.searchsorted(begin, ts, side="right") - 1 for ts in times]
    return [(before[i] + (ts - begin[i])) / np.timedelta64(1, "s") for i, ts in zip(found, times)]


def thinned_series(
    dataset: ds.Dataset, limits: dict[str, int]
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per (variant, worker): times, latency (ms) and RSS (MiB) of every stride-th iteration
    and of the worker's first and last, the stride doubling whenever a worker holds more than
    its variant's limit of points. One pass over only the needed columns; memory stays
    bounded by the limits."""
    wanted = list(limits)
    fetched = pc.field("observation").is_null() | (pc.field("observation") == "fetch")
    columns = ["variant_id", "worker_id", "iteration", "ts", "latency_ns", "rss_bytes"]
    kept: dict[tuple[str, int], _Thinned] = {}
    for batch in dataset.to_batches(
        columns=columns,
        filter=pc.field("variant_id").isin(wanted) & fetched,
        batch_readahead=2,
        fragment_readahead=1,
    ):
        if batch.num_rows == 0:
            continue
        variant = batch["variant_id"].dictionary_encode()
        workers = np.asarray(batch["worker_id"].fill_null(-1))
        keys = np.stack([np.asarray(variant.indices), workers])
        data = [np.asarray(batch[c]) for c in ("iteration", "ts")]
        data += [np.asarray(batch[c].fill_null(0)) for c in ("latency_ns", "rss_bytes")]
        for index, worker in np.unique(keys, axis=1).T:
            rows = (keys[0] == index) & (keys[1] == worker)
            vid = variant.dictionary[index].as_py()
            points = kept.setdefault((vid, int(worker)), _Thinned(limits[vid]))
            points.add(*(column[rows] for column in data))
    return {key: points.arrays() for key, points in kept.items()}


class _Thinned:
    """One worker's points at iterations divisible by a stride that doubles when full, and at
    its first and last iteration (so its line spans the worker's whole running)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.stride = limit, 1
        self.columns: list[np.ndarray] = [np.empty(0, dtype) for dtype in ("i8", "M8[ns]")]
        self.columns += [np.empty(0, "i8"), np.empty(0, "i8")]

    def add(self, *columns: np.ndarray) -> None:
        self._keep([np.concatenate(pair) for pair in zip(self.columns, columns)])
        while np.unique(self.columns[0]).size > self.limit:
            self.stride *= 2
            self._keep(self.columns)

    def _keep(self, columns: list[np.ndarray]) -> None:
        iteration = columns[0]
        ends = (iteration == iteration.min()) | (iteration == iteration.max())
        kept = (iteration % self.stride == 0) | ends
        self.columns = [column[kept] for column in columns]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        iteration, ts, latency, rss = self.columns
        _, first = np.unique(iteration, return_index=True)  # one point per iteration, in order
        return ts[first], latency[first] / 1e6, rss[first] / (1 << 20)
