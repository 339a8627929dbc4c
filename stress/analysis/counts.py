"""Per-variant counts over a run's rows, each one aggregate query (``stress.analysis.scan``):
iterations by status, distinct outputs (overall, within one worker, among fresh workers'
first outputs), non-finite iterations, latency quantiles, and outputs read again later."""

from __future__ import annotations

from typing import Any

from stress.analysis.scan import Scan
from stress.analysis.summary_model import VariantSummary
from stress.records.events import DEATH_KINDS

PerVariant = dict[str, dict[str, Any]]

_BY_STATUS = "SELECT variant_id, status, count(*) AS n FROM its GROUP BY ALL"
_WORKERS = "SELECT variant_id, count(DISTINCT worker_id) AS n FROM its GROUP BY ALL"
_DISTINCT = """
    SELECT variant_id, max(n) AS n FROM (
        SELECT variant_id, {groups}, count(DISTINCT digest) AS n
        FROM fetched WHERE status = 'ok' GROUP BY ALL
    ) GROUP BY variant_id
"""
_FIRST_PER_WORKER = """
    SELECT variant_id, max(n) AS n FROM (
        SELECT variant_id, output_name, count(DISTINCT first) AS n FROM (
            SELECT variant_id, worker_id, output_name, arg_min(digest, iteration) AS first
            FROM fetched WHERE status = 'ok' GROUP BY ALL
        ) GROUP BY ALL
    ) GROUP BY variant_id
"""
_NON_FINITE = """
    SELECT variant_id, count(*) AS n FROM (
        SELECT DISTINCT variant_id, thread, iteration FROM fetched
        WHERE coalesce(nan_count, 0) + coalesce(inf_count, 0) > 0
    ) GROUP BY variant_id
"""
_LATENCY = """
    SELECT variant_id, approx_quantile(latency_ns, 0.5) AS p50,
           approx_quantile(latency_ns, 0.99) AS p99
    FROM its WHERE latency_ns IS NOT NULL GROUP BY variant_id
"""
_LATER_LOOKS = """
    SELECT l.variant_id, count(*) AS rechecked,
           count(*) FILTER (WHERE l.digest IS DISTINCT FROM f.digest) AS changed
    FROM later_reads l JOIN fetched f USING (variant_id, thread, iteration, output_name)
    WHERE f.digest IS NOT NULL AND f.variant_id IN ({variants})
    GROUP BY l.variant_id
"""


def add_counts(per_variant: PerVariant, scan: Scan) -> None:
    """Fill the count fields of every variant the rows mention."""
    for vid, status, n in _rows(scan, _BY_STATUS):
        per_variant[vid][status] = n
        per_variant[vid]["iterations"] += n
    for key, sql in (
        ("workers", _WORKERS),
        ("distinct_outputs", _DISTINCT.format(groups="output_name")),
        ("distinct_within_worker", _DISTINCT.format(groups="worker_id, output_name")),
        ("distinct_first_per_worker", _FIRST_PER_WORKER),
        ("non_finite", _NON_FINITE),
    ):
        for vid, n in _rows(scan, sql):
            per_variant[vid][key] = n
    for vid, p50, p99 in _rows(scan, _LATENCY):
        per_variant[vid]["latency_p50_ms"] = p50 / 1e6
        per_variant[vid]["latency_p99_ms"] = p99 / 1e6
    for vid, rechecked, changed in _later_looks(scan):
        per_variant[vid]["views_rechecked"] = rechecked
        per_variant[vid]["views_changed"] = changed


def _later_looks(scan: Scan):
    """Only the variants that read outputs again (a literal list lets the scan skip the
    rest of the rows early)."""
    found = scan.table("SELECT DISTINCT variant_id FROM later_reads")["variant_id"].to_pylist()
    if not found:
        return []
    listed = ", ".join("'" + vid.replace("'", "''") + "'" for vid in found)
    return _rows(scan, _LATER_LOOKS.format(variants=listed))


def _rows(scan: Scan, sql: str):
    """The answer's rows as tuples (answers are small: one row per variant)."""
    table = scan.table(sql)
    return zip(*(table[c].to_pylist() for c in table.column_names))


def death_events(variant: dict[str, Any]) -> int:
    """The worker deaths of a variant being summarised whose events were read."""
    return sum(variant["events"].get(k, 0) for k in DEATH_KINDS)


def death_count(variant: dict[str, Any]) -> int:
    """The variant's worker deaths while it is being summarised, as
    ``VariantSummary.deaths`` says them once it is: a death whose event was lost is still
    a death."""
    return max(death_events(variant), variant.get("deaths_counted", 0))


def death_words(variant: VariantSummary) -> str:
    """'2 crash, 1 hang, 1 with no event (counted by the run)'; empty when none."""
    events = variant.events.items()
    words = [f"{count} {kind}" for kind, count in events if kind in DEATH_KINDS and count]
    unrecorded = variant.deaths - variant.events.deaths
    if unrecorded:
        words.append(f"{unrecorded} with no event (counted by the run)")
    return ", ".join(words)
