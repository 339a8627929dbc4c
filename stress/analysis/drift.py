"""Leaks and drift: how a variant's resident memory and latency move over its iterations.

Per worker, a least-squares line through (iteration, RSS) and (iteration, latency) after a
warm-up (the first 10 % of the worker's iterations, at least 10), computed from sums so a
night of rows costs one grouped pass. A variant's slope is the iteration-weighted mean of its
workers' (workers restart, so their RSS lines start afresh). Flags say where a slope is beyond
what noise and allocator caches explain.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

WARMUP_FRACTION = 0.10
WARMUP_MIN = 10
MIN_FITTED = 30  # iterations after warm-up needed for a slope
LEAK_BYTES_PER_1K = 64 << 10  # flag RSS growing faster than this per 1,000 iterations ...
LEAK_MIN_GROWTH = 16 << 20  # ... when the fitted growth over the variant is at least this
LATENCY_DRIFT = 1.5  # flag latency whose fitted end is this many times its fitted start ...
LATENCY_T = 5.0  # ... when its slope is at least this many standard errors from flat

_KEYS = ["variant_id", "worker_id"]


def drift(rows: pa.Table) -> dict[str, dict[str, Any]]:
    """Per variant: RSS slope (bytes per 1,000 iterations and per hour), latency trend
    (fitted end / fitted start) and flags; variants with too few iterations are left out."""
    columns = [*_KEYS, "iteration", "ts", "rss_bytes", "latency_ns"]
    fitted = _after_warmup(rows.select(columns))
    if fitted.num_rows == 0:
        return {}
    x = pc.cast(fitted["iteration"], pa.float64())
    ns = pc.cast(fitted["ts"], pa.int64())
    since = pc.subtract(ns, pc.min(ns))  # centred: epoch nanoseconds squared overflow precision
    seconds = pc.divide(pc.cast(since, pa.float64()), 1e9)
    columns = {"x": x, "t": seconds}
    for name in ("rss_bytes", "latency_ns"):
        columns[name] = pc.cast(fitted[name], pa.float64())
    sums = _sums(pa.table({k: fitted[k] for k in _KEYS} | columns))
    return _per_variant(sums)


def _after_warmup(rows: pa.Table) -> pa.Table:
    """Rows of each worker past its warm-up."""
    if rows.num_rows == 0:
        return rows
    spans = rows.group_by(_KEYS).aggregate([("iteration", "min"), ("iteration", "max")])
    span = pc.subtract(spans["iteration_max"], spans["iteration_min"])
    skip = pc.max_element_wise(
        pc.multiply(pc.cast(span, pa.float64()), WARMUP_FRACTION), float(WARMUP_MIN)
    )
    start = pc.add(pc.cast(spans["iteration_min"], pa.float64()), skip)
    starts = pa.table({k: spans[k] for k in _KEYS} | {"fit_from": start})
    joined = rows.join(starts, _KEYS, join_type="inner")
    keep = pc.greater_equal(pc.cast(joined["iteration"], pa.float64()), joined["fit_from"])
    return joined.filter(keep)


def _sums(table: pa.Table) -> pa.Table:
    """Per worker: n and the sums a least-squares line needs, for RSS and latency against the
    iteration and RSS against time."""
    x, t = table["x"], table["t"]
    extra = {
        "xx": pc.multiply(x, x),
        "tt": pc.multiply(t, t),
        "x_rss": pc.multiply(x, table["rss_bytes"]),
        "t_rss": pc.multiply(t, table["rss_bytes"]),
        "x_lat": pc.multiply(x, table["latency_ns"]),
        "lat_lat": pc.multiply(table["latency_ns"], table["latency_ns"]),
    }
    table = table.append_column("one", pa.array([1] * table.num_rows, pa.int64()))
    for name, column in extra.items():
        table = table.append_column(name, column)
    summed = ["one", "x", "t", "rss_bytes", "latency_ns", *extra]
    aggregates = [(c, "sum") for c in summed] + [("x", "min"), ("x", "max")]
    return table.group_by(_KEYS).aggregate(aggregates)


def _slope(n: float, sx: float, sy: float, sxx: float, sxy: float) -> float | None:
    denominator = n * sxx - sx * sx
    return None if n < MIN_FITTED or denominator <= 0 else (n * sxy - sx * sy) / denominator


def _t_statistic(n: float, sx: float, sy: float, sxx: float, sxy: float, syy: float) -> float:
    """The slope over its standard error (inf for a perfect line, 0 for no slope)."""
    x_spread, y_spread = sxx - sx * sx / n, syy - sy * sy / n
    covariance = sxy - sx * sy / n
    if x_spread <= 0 or covariance == 0:
        return 0.0
    slope = covariance / x_spread
    residual = max(y_spread - slope * covariance, 0.0)
    if residual == 0 or n <= 2:
        return float("inf")
    return slope / ((residual / (n - 2)) / x_spread) ** 0.5


def _per_variant(sums: pa.Table) -> dict[str, dict[str, Any]]:
    fits: dict[str, list[dict[str, float]]] = {}
    for row in sums.to_pylist():
        n = row["one_sum"]
        sx, st = row["x_sum"], row["t_sum"]
        per_iteration = _slope(n, sx, row["rss_bytes_sum"], row["xx_sum"], row["x_rss_sum"])
        per_second = _slope(n, st, row["rss_bytes_sum"], row["tt_sum"], row["t_rss_sum"])
        latency = _slope(n, sx, row["latency_ns_sum"], row["xx_sum"], row["x_lat_sum"])
        if per_iteration is None or per_second is None or latency is None:
            continue
        intercept = row["latency_ns_sum"] / n - latency * sx / n
        t = _t_statistic(
            n, sx, row["latency_ns_sum"], row["xx_sum"], row["x_lat_sum"], row["lat_lat_sum"]
        )
        fits.setdefault(row["variant_id"], []).append(
            {
                "n": n,
                "rss_per_iteration": per_iteration,
                "rss_per_second": per_second,
                "latency_start": intercept + latency * row["x_min"],
                "latency_end": intercept + latency * row["x_max"],
                "span": row["x_max"] - row["x_min"],
                "latency_t": t,
            }
        )
    return {vid: _combined(workers) for vid, workers in fits.items()}


def _combined(workers: list[dict[str, float]]) -> dict[str, Any]:
    """The workers' fits weighted by their iterations, and the flags they earn."""
    total = sum(w["n"] for w in workers)
    mean = lambda key: sum(w[key] * w["n"] for w in workers) / total  # noqa: E731
    per_1k = mean("rss_per_iteration") * 1000
    growth = sum(w["rss_per_iteration"] * w["span"] for w in workers)
    start, end = mean("latency_start"), mean("latency_end")
    trend = end / start if start > 0 else None
    flags = []
    if per_1k > LEAK_BYTES_PER_1K and growth >= LEAK_MIN_GROWTH:
        flags.append("rss_growth")
    significant = all(w["latency_t"] >= LATENCY_T for w in workers)
    if trend is not None and trend >= LATENCY_DRIFT and significant:
        flags.append("latency_drift")
    return {
        "rss_bytes_per_1k_iterations": per_1k,
        "rss_bytes_per_hour": mean("rss_per_second") * 3600,
        "rss_growth_bytes": growth,
        "latency_trend": trend,
        "latency_t": min(w["latency_t"] for w in workers),
        "fitted_iterations": total,
        "flags": flags,
    }
