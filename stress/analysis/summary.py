"""The per-variant summary printed at the end of a run and by ``mnn-stress summary``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stress.analysis.dataset import check_run_dir, events, iterations
from stress.analysis.drift import drift
from stress.analysis.explain import attribution
from stress.analysis.grading import (
    GRADES,
    bases,
    distinct_outputs,
    grade_digests,
    graded_outputs,
    iteration_grades,
    worst_mismatch,
)
from stress.analysis.rates import variant_rates
from stress.analysis.references import against_onnxruntime, load_references
from stress.analysis.signatures import signatures
from stress.analysis.tolerance import tolerances_for
from stress.events import DEATH_KINDS, EventKind
from stress.manifest import ManifestData, read_manifest
from stress.rundir import Owner
from stress.states import RunStatus, VariantStatus

INEXACT_KEPT = 50  # per variant, the most frequent distinct outputs that are not exact


def run_status(manifest: ManifestData) -> tuple[RunStatus, str | None]:
    """The run's status as a reader should see it: a run still marked running whose
    coordinator is gone was killed."""
    if manifest.status is RunStatus.RUNNING and Owner(**manifest.owner).alive() is False:
        return RunStatus.KILLED, (
            f"the coordinator (pid {manifest.owner['pid']}) is gone without finishing the run"
        )
    return manifest.status, manifest.reason


def summarize(run_dir: Path) -> dict[str, Any]:
    """Counts per variant: iterations by status, distinct outputs, non-finite, deaths, latency."""
    check_run_dir(run_dir)
    manifest = read_manifest(run_dir)
    status, reason = run_status(manifest)
    rows = iterations(run_dir).to_table(
        columns=[
            "scenario",
            "variant_id",
            "worker_id",
            "thread",
            "iteration",
            "status",
            "output_name",
            "observation",
            "digest",
            "nan_count",
            "inf_count",
            "min",
            "max",
            "mean",
            "latency_ns",
            "ts",
            "rss_bytes",
        ]
    )
    per_variant = {}
    for vid, entry in manifest.variants.items():
        variant_status = entry.status
        if status is RunStatus.KILLED and not entry.status.finished:
            variant_status = VariantStatus.KILLED  # it was going when the coordinator died
        per_variant[vid] = _empty(vid, entry.scenario, entry.label, variant_status.value)
        per_variant[vid]["completed"] = entry.completed
    _add_iterations(per_variant, rows)
    references = _add_grades(run_dir, manifest, per_variant, rows)
    fetched = rows.filter(pc.equal(pc.fill_null(rows["observation"], "fetch"), "fetch"))
    for vid, found in drift(fetched).items():
        per_variant[vid]["drift"] = found
    event_rows = events(run_dir).to_table()
    _add_events(per_variant, event_rows.select(["variant_id", "kind"]))
    for variant in per_variant.values():
        variant["verdict"] = verdict(variant)
        deaths = sum(variant["events"][k] for k in DEATH_KINDS)
        variant.update(variant_rates(variant, deaths, clean=variant["verdict"] == "ok"))
    return {
        "run_id": manifest.run_id,
        "status": status.value,
        "reason": reason,
        "started": manifest.started,
        "ended": manifest.ended,
        "mnn_version": manifest.versions["MNN"],
        "references": references,
        "variants": list(per_variant.values()),
        "crash_signatures": signatures(event_rows, DEATH_KINDS),
        "attribution": attribution(manifest, per_variant),
    }


def _empty(variant_id: str, scenario: str, label: str, status: str) -> dict[str, Any]:
    return {
        "variant_id": variant_id,
        "scenario": scenario,
        "label": label,
        "status": status,
        "iterations": 0,
        "ok": 0,
        "invalid": 0,
        "error": 0,
        "distinct_outputs": 0,
        "non_finite": 0,
        "workers": 0,
        "distinct_within_worker": 0,
        "distinct_first_per_worker": 0,
        "views_rechecked": 0,
        "views_changed": 0,
        "grades": {grade: 0 for grade in GRADES},
        "mismatch": None,
        "graded_by": {},
        "inexact_outputs": [],
        "latency_p50_ms": None,
        "latency_p99_ms": None,
        "drift": None,
        "events": {kind.value: 0 for kind in EventKind},
    }


def _rows(table: pa.Table, *columns: str):
    """Tuples of the given columns, row by row (tables here are small: one row per group)."""
    return zip(*(table[c].to_pylist() for c in columns))


def _add_iterations(per_variant: dict[str, dict[str, Any]], rows: pa.Table) -> None:
    if rows.num_rows == 0:
        return
    fetched = pc.equal(pc.fill_null(rows["observation"], "fetch"), "fetch")
    _add_later_looks(per_variant, rows.filter(fetched), rows.filter(pc.invert(fetched)))
    rows = rows.filter(fetched)
    by_status = _count_iterations(rows, ["variant_id", "status"])
    for vid, status, count in _rows(by_status, "variant_id", "status", "iterations"):
        per_variant[vid][status] = count
        per_variant[vid]["iterations"] += count
    ok = rows.filter(pc.equal(rows["status"], "ok"))
    _most_distinct(per_variant, "distinct_outputs", ok, ["output_name"])
    _add_process_repeats(per_variant, rows, ok)
    non_finite_count = pc.add(
        pc.fill_null(rows["nan_count"], 0), pc.fill_null(rows["inf_count"], 0)
    )
    non_finite = _count_iterations(rows.filter(pc.greater(non_finite_count, 0)), ["variant_id"])
    for vid, count in _rows(non_finite, "variant_id", "iterations"):
        per_variant[vid]["non_finite"] = count
    quantiles = pc.TDigestOptions(q=[0.5, 0.99])
    latency = rows.group_by("variant_id").aggregate([("latency_ns", "tdigest", quantiles)])
    for vid, found in _rows(latency, "variant_id", "latency_ns_tdigest"):
        if found and found[0] == found[0]:  # all latencies null: no digest (NaN)
            per_variant[vid]["latency_p50_ms"] = found[0] / 1e6
            per_variant[vid]["latency_p99_ms"] = found[1] / 1e6


def _add_process_repeats(per_variant: dict[str, dict[str, Any]], rows: pa.Table, ok: pa.Table):
    """Repeats within one process against repeats across fresh ones: the most distinct
    outputs any one worker produced, and the distinct outputs among the first ok iteration
    of each worker (reruns in one process can hide what fresh processes show)."""
    workers = rows.group_by("variant_id").aggregate([("worker_id", "count_distinct")])
    for vid, count in _rows(workers, "variant_id", "worker_id_count_distinct"):
        per_variant[vid]["workers"] = count
    _most_distinct(per_variant, "distinct_within_worker", ok, ["worker_id", "output_name"])
    keys = ["variant_id", "worker_id", "output_name"]
    first = ok.group_by(keys).aggregate([("iteration", "min")])
    first = pa.table({**{k: first[k] for k in keys}, "iteration": first["iteration_min"]})
    firsts = ok.join(first, [*keys, "iteration"], join_type="inner")
    _most_distinct(per_variant, "distinct_first_per_worker", firsts, ["output_name"])


def _most_distinct(
    per_variant: dict[str, dict[str, Any]], key: str, rows: pa.Table, groups: list[str]
) -> None:
    """Per variant, the most distinct digests in any one group of its rows, into ``key``."""
    counts = rows.group_by(["variant_id", *groups]).aggregate([("digest", "count_distinct")])
    for vid, count in _rows(counts, "variant_id", "digest_count_distinct"):
        per_variant[vid][key] = max(per_variant[vid][key], count)


_OUTPUT_KEYS = ["variant_id", "thread", "iteration", "output_name"]


def _add_later_looks(
    per_variant: dict[str, dict[str, Any]], fetched: pa.Table, later: pa.Table
) -> None:
    """Outputs read again later (``output_lifetime``) against what was recorded at fetch: a
    view changed when its bytes differ, or when nothing could be read from it any more."""
    if later.num_rows == 0:
        return
    at_fetch = fetched.select([*_OUTPUT_KEYS, "digest"]).rename_columns(
        [*_OUTPUT_KEYS, "digest_at_fetch"]
    )
    pairs = later.select([*_OUTPUT_KEYS, "digest"]).join(at_fetch, _OUTPUT_KEYS, join_type="inner")
    compared = pairs.filter(pc.is_valid(pairs["digest_at_fetch"]))
    differs = pc.fill_null(pc.not_equal(compared["digest"], compared["digest_at_fetch"]), True)
    for name, table in (("views_rechecked", compared), ("views_changed", compared.filter(differs))):
        counts = table.group_by("variant_id").aggregate([("variant_id", "count")])
        for vid, count in _rows(counts, "variant_id", "variant_id_count"):
            per_variant[vid][name] = count


def _add_grades(
    run_dir: Path, manifest: ManifestData, per_variant: dict[str, dict[str, Any]], rows: pa.Table
) -> dict[str, dict[str, Any]]:
    """Every fetch row graded against its scenario's reference: iterations per grade and
    the worst mismatch per variant. Returns per scenario what the reference is."""
    names = [s["name"] for s in manifest.scenarios]
    tolerances = {s["name"]: s.get("tolerance", {}) for s in manifest.scenarios}
    references = load_references(run_dir, names)
    fetched = rows.filter(pc.equal(pc.fill_null(rows["observation"], "fetch"), "fetch"))
    grades = grade_digests(run_dir, distinct_outputs(fetched), references, tolerances)
    counts = iteration_grades(fetched, grades)
    for vid, grade, count in _rows(counts, "variant_id", "grade", "iterations"):
        per_variant[vid]["grades"][grade] = count
    for vid, outputs in graded_outputs(fetched, grades).items():
        per_variant[vid]["mismatch"] = worst_mismatch(outputs)
        per_variant[vid]["graded_by"] = bases(outputs)
        by_rows = sorted(outputs, key=lambda o: -o["rows"])[:INEXACT_KEPT]
        per_variant[vid]["inexact_outputs"] = [
            {k: v for k, v in o.items() if k != "scenario"} for o in by_rows
        ]
    return {
        name: {
            "outputs": sorted(o for s, o in references.outputs if s == name),
            "digests": {o: ref.digest for (s, o), ref in references.outputs.items() if s == name},
            "problem": references.problems.get(name),
            "tolerance": tolerances_for(tolerances[name], "").describe(),
            "onnxruntime": {
                "status": manifest.reference.get(name, {}).get("onnxruntime"),
                "outputs": against_onnxruntime(run_dir, name, references, tolerances[name]),
            },
        }
        for name in names
    }


def _count_iterations(rows: pa.Table, keys: list[str]) -> pa.Table:
    """Iterations per group: distinct (thread, iteration) pairs, as column ``iterations``."""
    per_thread = rows.group_by([*keys, "thread"]).aggregate([("iteration", "count_distinct")])
    summed = per_thread.group_by(keys).aggregate([("iteration_count_distinct", "sum")])
    columns = {key: summed[key] for key in keys}
    return pa.table({**columns, "iterations": summed["iteration_count_distinct_sum"]})


def _add_events(per_variant: dict[str, dict[str, Any]], table: pa.Table) -> None:
    if table.num_rows == 0:
        return
    counts = table.group_by(["variant_id", "kind"]).aggregate([("kind", "count")])
    for vid, kind, count in _rows(counts, "variant_id", "kind", "kind_count"):
        per_variant[vid]["events"][kind] = count


def verdict(variant: dict[str, Any]) -> str:
    """One word for the variant: what a user should look at first. Findings about MNN come
    first; then a variant that did not run its budget says why (``KILLED``, ``INTERRUPTED``,
    ...); a finished one whose rows did not all reach the disk (the coordinator died before
    writing them) is ``INCOMPLETE``, one without a single iteration ``EMPTY``; only a
    finished variant with all its rows and nothing wrong is ``ok``."""
    deaths = sum(variant["events"][k] for k in DEATH_KINDS)
    if variant["status"] == VariantStatus.FAILED.value or variant["events"]["harness"]:
        return "HARNESS_ERROR"
    if variant["status"] == VariantStatus.REFUSED.value:
        return "REFUSED"
    if variant["status"] == VariantStatus.QUARANTINED.value:
        return "QUARANTINED"
    if deaths:
        return "CRASHED"
    if variant["invalid"] or variant["error"] or variant["non_finite"]:
        return "FAILED"
    if variant["views_changed"]:
        return "VIEW_CHANGED"
    if variant["distinct_outputs"] > 1:
        return "INCONSISTENT"
    if variant["grades"]["mismatch"]:
        return "MISMATCH"
    if variant["status"] != VariantStatus.DONE.value:
        return variant["status"].upper()
    if variant["completed"] > variant["iterations"]:
        return "INCOMPLETE"
    if variant["iterations"] == 0:
        return "EMPTY"
    return "ok"
