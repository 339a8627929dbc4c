"""Leaks and drift: how a variant's resident memory and latency move over its iterations.

Per worker, a least-squares line through (iteration, RSS) and (iteration, latency) after a
warm-up (the first 10 % of the worker's iterations, at least 10), computed from sums in one
aggregate query, so a night of rows costs one pass. A variant's slope is the iteration-weighted
mean of its workers' (workers restart, so their RSS lines start afresh). Flags say where a
slope is beyond what noise and allocator caches explain, and only where the medians of the
first and last thirds of the fitted iterations move the same way (one spike can tilt a line,
not a median). A rate per hour is given only for fits that span MIN_RATE_SPAN_S of wall-clock
time: a sub-second variant's extrapolation to an hour says nothing.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from stress.analysis.scan import Scan

WARMUP_FRACTION = 0.10
WARMUP_MIN = 10
MIN_FITTED = 30  # iterations after warm-up needed for a slope
LEAK_BYTES_PER_1K = 64 << 10  # flag RSS growing faster than this per 1,000 iterations ...
LEAK_MIN_GROWTH = 16 << 20  # ... when the fitted growth over the variant is at least this
LATENCY_DRIFT = 1.5  # flag latency whose fitted end is this many times its fitted start ...
LATENCY_T = 5.0  # ... when its slope is at least this many standard errors from flat
MIN_RATE_SPAN_S = 5.0  # wall-clock seconds a fit must span for a rate per hour

_SUMS = f"""
    WITH spans AS (
        SELECT variant_id, worker_id, min(iteration) AS lo, max(iteration) AS hi,
               min(epoch_ns(ts)) AS t0
        FROM its WHERE rss_bytes IS NOT NULL AND latency_ns IS NOT NULL GROUP BY ALL
    ), windows AS (
        SELECT *, lo + greatest({WARMUP_MIN}, {WARMUP_FRACTION} * (hi - lo)) AS start
        FROM spans
    ), fitted AS (
        SELECT variant_id, worker_id, iteration::DOUBLE AS x,
               (epoch_ns(ts) - t0)::DOUBLE / 1e9 AS t,  -- per worker: squares keep precision
               rss_bytes::DOUBLE AS rss, latency_ns::DOUBLE AS lat,
               iteration < start + (hi - start) / 3 AS early,
               iteration > hi - (hi - start) / 3 AS late
        FROM its JOIN windows USING (variant_id, worker_id)
        WHERE rss_bytes IS NOT NULL AND latency_ns IS NOT NULL AND iteration >= start
    )
    SELECT variant_id, worker_id, count(*)::DOUBLE AS one_sum, sum(x) AS x_sum,
           sum(t) AS t_sum, sum(rss) AS rss_bytes_sum, sum(lat) AS latency_ns_sum,
           sum(x * x) AS xx_sum, sum(t * t) AS tt_sum, sum(x * rss) AS x_rss_sum,
           sum(t * rss) AS t_rss_sum, sum(x * lat) AS x_lat_sum,
           sum(lat * lat) AS lat_lat_sum, min(x) AS x_min, max(x) AS x_max,
           max(t) - min(t) AS t_span,
           median(rss) FILTER (WHERE early) AS rss_early,
           median(rss) FILTER (WHERE late) AS rss_late,
           median(lat) FILTER (WHERE early) AS lat_early,
           median(lat) FILTER (WHERE late) AS lat_late
    FROM fitted GROUP BY ALL
"""


def drift(source: Scan | pa.Table) -> dict[str, dict[str, Any]]:
    """Per variant: RSS slope (bytes per 1,000 iterations and per hour), latency trend
    (fitted end / fitted start) and flags; variants with too few iterations are left out.
    ``source``: a run's rows, or a table of one row per iteration (variant_id, worker_id,
    iteration, ts, rss_bytes, latency_ns)."""
    if isinstance(source, Scan):
        return _per_variant(source.table(_SUMS))
    with Scan(source) as scan:
        return _per_variant(scan.table(_SUMS))


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
                "wall_span": row["t_span"],
                "rss_early": row["rss_early"] or 0.0,
                "rss_late": row["rss_late"] or 0.0,
                "latency_early": row["lat_early"] or 0.0,
                "latency_late": row["lat_late"] or 0.0,
            }
        )
    return {vid: _combined(workers) for vid, workers in fits.items()}


def _combined(workers: list[dict[str, float]]) -> dict[str, Any]:
    """The workers' fits weighted by their iterations, and the flags they earn."""
    total = sum(w["n"] for w in workers)
    mean = lambda key: sum(w[key] * w["n"] for w in workers) / total  # noqa: E731
    per_1k = mean("rss_per_iteration") * 1000
    growth = sum(w["rss_per_iteration"] * w["span"] for w in workers)
    median_growth = sum(w["rss_late"] - w["rss_early"] for w in workers)
    start, end = mean("latency_start"), mean("latency_end")
    trend = end / start if start > 0 else None
    early, late = mean("latency_early"), mean("latency_late")
    median_ratio = late / early if early > 0 else None
    wall_span = max(w["wall_span"] for w in workers)
    flags = []
    if per_1k > LEAK_BYTES_PER_1K and min(growth, 2 * median_growth) >= LEAK_MIN_GROWTH:
        flags.append("rss_growth")
    significant = all(w["latency_t"] >= LATENCY_T for w in workers)
    drifts = [r is not None and r >= LATENCY_DRIFT for r in (trend, median_ratio)]
    if all(drifts) and significant:
        flags.append("latency_drift")
    return {
        "rss_bytes_per_1k_iterations": per_1k,
        "rss_bytes_per_hour": mean("rss_per_second") * 3600
        if wall_span >= MIN_RATE_SPAN_S
        else None,
        "rss_growth_bytes": growth,
        "rss_median_growth_bytes": median_growth,
        "latency_trend": trend,
        "latency_median_ratio": median_ratio,
        "latency_t": min(w["latency_t"] for w in workers),
        "fitted_iterations": total,
        "wall_span_s": wall_span,
        "flags": flags,
    }
