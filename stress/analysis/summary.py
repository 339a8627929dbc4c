"""The per-variant summary printed at the end of a run and by ``mnn-stress summary``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from stress.analysis.counts import add_counts, death_count
from stress.analysis.damaged import damage, warnings
from stress.analysis.dataset import check_run_dir, events_table
from stress.analysis.drift import drift
from stress.analysis.explain import attribution
from stress.analysis.grading import (
    GRADES,
    bases,
    distinct_outputs,
    grade_digests,
    graded_outputs,
    iteration_grades,
    undigested,
    worst_mismatch,
)
from stress.analysis.rates import variant_rates
from stress.analysis.references import against_onnxruntime, load_references
from stress.analysis.scan import Scan, relisted
from stress.analysis.signatures import signatures
from stress.analysis.stand_in import UNKNOWN_WHAT, manifest_from_rows
from stress.analysis.summary_model import OnnxRuntimeCheck, RunSummary, VariantSummary
from stress.analysis.tolerance import tolerances_for
from stress.analysis.verdicts import Verdict, from_status
from stress.records.damage import marked
from stress.records.events import DEATH_KINDS, EventKind
from stress.records.manifest import ManifestData, read_records
from stress.records.rundir import Owner, RunLayout
from stress.records.states import RunStatus, VariantStatus

INEXACT_KEPT = 50  # per variant, the most frequent distinct outputs that are not exact


def run_status(manifest: ManifestData) -> tuple[RunStatus, str | None]:
    """The run's status as a reader should see it: a run still marked running whose
    coordinator is gone was killed."""
    if manifest.status is RunStatus.RUNNING and Owner(**manifest.owner).alive() is False:
        return RunStatus.KILLED, (
            f"the coordinator (pid {manifest.owner['pid']}) is gone without finishing the run"
        )
    return manifest.status, manifest.reason


def summarize(run_dir: Path) -> RunSummary:
    """Everything the summary, the report and compare show: per variant its counts, grades,
    rates, drift, deaths and verdict; the references, crash signatures and attribution; and
    what could not be read (``damage``, ``warnings``). The rows are aggregated where they lie
    (``stress.analysis.scan``), never loaded whole; a damaged manifest is stood in for by
    what the rows say (``stress.analysis.stand_in``). Done again when a read found a part
    damaged part-way, or a running run's parts changed between two reads, so that no count
    includes rows the others do not."""
    check_run_dir(run_dir)
    while True:
        before = (marked(), relisted())
        try:
            result = _summarize(run_dir)
        except ValueError:  # counts of two snapshots of a running run disagreed
            if relisted() == before[1]:
                raise
            continue
        if (marked(), relisted()) == before:
            return result


def _summarize(run_dir: Path) -> RunSummary:
    found, unreadable = read_records(run_dir)
    with Scan(RunLayout(run_dir).iterations) as scan:
        event_rows = events_table(run_dir)
        if found is None:
            unreadable = [f"{unreadable[0]}: {UNKNOWN_WHAT}"]
        manifest = found or manifest_from_rows(scan, event_rows)
        status, reason = run_status(manifest)
        per_variant = _variants(manifest, status)
        add_counts(per_variant, scan)
        references = _add_grades(run_dir, manifest, per_variant, scan)
        for vid, found_drift in drift(scan).items():
            per_variant[vid]["drift"] = found_drift
    disagreeing = {
        name
        for name, found in references.items()
        if OnnxRuntimeCheck.model_validate(found["onnxruntime"]).disagrees
    }
    for variant in per_variant.values():
        variant["onnxruntime_disagrees"] = variant["scenario"] in disagreeing
    _add_events(per_variant, event_rows.select(["variant_id", "kind"]))
    _add_memcheck_slowdown(manifest, per_variant)
    variants = {vid: _finished(variant) for vid, variant in per_variant.items()}
    section = damage(run_dir, manifest, variants, unreadable)
    return RunSummary(
        run_id=manifest.run_id,
        status=status,
        reason=reason,
        started=manifest.started,
        ended=manifest.ended,
        pauses=[pause.to_dict() for pause in manifest.pauses],
        mnn_version=manifest.versions["MNN"],
        references=references,
        variants=list(variants.values()),
        crash_signatures=signatures(event_rows, DEATH_KINDS),
        memcheck_signatures=signatures(event_rows, [EventKind.MEMCHECK.value]),
        attribution=attribution(manifest, variants),
        damage=section,
        warnings=warnings(section),
    )


def _finished(variant: dict[str, Any]) -> VariantSummary:
    """The variant's verdict and rates added to its counts, validated into the model."""
    variant["verdict"] = verdict(variant)
    clean = variant["verdict"] is Verdict.OK
    variant.update(variant_rates(variant, death_count(variant), clean=clean))
    return VariantSummary.model_validate(variant)


def _variants(manifest: ManifestData, status: RunStatus) -> dict[str, dict[str, Any]]:
    """Per variant, where the manifest says it stood (``completed`` None: unknown)."""
    per_variant = {}
    for vid, entry in manifest.variants.items():
        variant_status = entry.status
        if status is RunStatus.KILLED and not entry.status.finished:
            variant_status = VariantStatus.KILLED  # it was going when the coordinator died
        per_variant[vid] = _empty(vid, entry.scenario, entry.label, variant_status.value)
        known = entry.status is not VariantStatus.UNKNOWN
        per_variant[vid]["completed"] = entry.completed if known else None
        per_variant[vid]["deaths_counted"] = entry.crashes if known else 0
    return per_variant


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
        "memcheck_slowdown": None,
        "onnxruntime_disagrees": False,
        "events": {kind.value: 0 for kind in EventKind},
    }


def _rows(table: pa.Table, *columns: str):
    """Tuples of the given columns, row by row (tables here are small: one row per group)."""
    return zip(*(table[c].to_pylist() for c in columns))


def _add_grades(
    run_dir: Path, manifest: ManifestData, per_variant: dict[str, dict[str, Any]], scan: Scan
) -> dict[str, dict[str, Any]]:
    """Every fetch row graded against its scenario's reference: iterations per grade and
    the worst mismatch per variant. Returns per scenario what the reference is."""
    names = [s["name"] for s in manifest.scenarios]
    tolerances = {s["name"]: s.get("tolerance", {}) for s in manifest.scenarios}
    references = load_references(run_dir, names)
    grades = grade_digests(scan, distinct_outputs(scan), references, tolerances)
    inexact = graded_outputs(scan, grades)
    for variant in per_variant.values():  # all ok outputs exact: ok iterations are exact
        variant["grades"].update({k: variant[k] for k in ("invalid", "error")}, exact=variant["ok"])
    others = sorted(set(inexact) | undigested(scan))
    for vid in others:
        per_variant[vid]["grades"] = {grade: 0 for grade in GRADES}
    counts = iteration_grades(scan, grades, others)
    for vid, grade, count in _rows(counts, "variant_id", "grade", "iterations"):
        per_variant[vid]["grades"][grade] = count
    for vid, outputs in inexact.items():
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
                "status": _onnxruntime_status(manifest, name),
                "outputs": against_onnxruntime(run_dir, name, references, tolerances[name]),
            },
        }
        for name in names
    }


def _onnxruntime_status(manifest: ManifestData, scenario: str) -> str | None:
    entry = manifest.reference.get(scenario)
    return entry.onnxruntime if entry is not None else None


def _add_memcheck_slowdown(manifest: ManifestData, per_variant: dict[str, dict[str, Any]]) -> None:
    """For a variant run under valgrind, its p50 latency over that of the same variant
    without memcheck, where the run has both (``memcheck_slowdown``)."""
    plain = {
        _without_memcheck(entry.params): vid
        for vid, entry in manifest.variants.items()
        if entry.params.get("memcheck") == "off"
    }
    for vid, entry in manifest.variants.items():
        twin = plain.get(_without_memcheck(entry.params))
        if entry.params.get("memcheck") != "on" or twin is None:
            continue
        on, off = per_variant[vid]["latency_p50_ms"], per_variant[twin]["latency_p50_ms"]
        if on and off:
            per_variant[vid]["memcheck_slowdown"] = on / off


def _without_memcheck(params: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k != "memcheck"}, sort_keys=True)


def _add_events(per_variant: dict[str, dict[str, Any]], table: pa.Table) -> None:
    if table.num_rows == 0:
        return
    counts = table.group_by(["variant_id", "kind"]).aggregate([("kind", "count")])
    for vid, kind, count in _rows(counts, "variant_id", "kind", "kind_count"):
        per_variant[vid]["events"][kind] = count


def verdict(variant: dict[str, Any]) -> Verdict:
    """One word for the variant: what a user should look at first. Findings about MNN come
    first; then a variant that did not run its budget says why (``KILLED``, ``INTERRUPTED``,
    ...); ``MEMCHECK`` is an invalid read, write or free that valgrind saw; ``ORT_MISMATCH``
    outputs as MNN's clean reference, which ONNX Runtime disagrees with; ``LEAK`` resident
    memory that grew beyond noise over the iterations (``drift``); a finished one
    whose rows did not all reach the disk (the coordinator died before
    writing them) is ``INCOMPLETE``, one without a single iteration ``EMPTY``; only a
    finished variant with all its rows and nothing wrong is ``ok``."""
    if variant["status"] == VariantStatus.FAILED.value or variant["events"]["harness"]:
        return Verdict.HARNESS_ERROR
    if variant["status"] == VariantStatus.REFUSED.value:
        return Verdict.REFUSED
    if variant["status"] == VariantStatus.QUARANTINED.value:
        return Verdict.QUARANTINED
    if death_count(variant):
        return Verdict.CRASHED
    if variant["events"]["memcheck"]:
        return Verdict.MEMCHECK
    if variant["invalid"] or variant["error"] or variant["non_finite"]:
        return Verdict.FAILED
    if variant["views_changed"]:
        return Verdict.VIEW_CHANGED
    if variant["distinct_outputs"] > 1:
        return Verdict.INCONSISTENT
    if variant["grades"]["mismatch"]:
        return Verdict.MISMATCH
    if variant["onnxruntime_disagrees"]:
        return Verdict.ORT_MISMATCH
    if "rss_growth" in (variant.get("drift") or {}).get("flags", ()):
        return Verdict.LEAK
    if variant["status"] != VariantStatus.DONE.value:
        return from_status(variant["status"])
    if variant["completed"] > variant["iterations"]:
        return Verdict.INCOMPLETE
    if variant["iterations"] == 0:
        return Verdict.EMPTY
    return Verdict.OK
