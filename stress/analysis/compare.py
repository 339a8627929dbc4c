"""Two runs side by side (``mnn-stress compare RUN_A RUN_B``): variant by variant, matched by
variant id, the failure rates with their intervals, the verdicts and the latency ratio; and per
scenario output, whether the clean references agree (two MNN versions, two machines, before and
after an upgrade)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from stress.analysis.damaged import print_warnings
from stress.analysis.grading import FAILING as FAILING_GRADES
from stress.analysis.rates import describe
from stress.analysis.references import load_references
from stress.analysis.summary_model import OutcomeRate, Rates, RunSummary, VariantSummary
from stress.analysis.tolerance import compare, tolerances_for
from stress.analysis.verdicts import FINDINGS
from stress.records.manifest import read_records

FAILING = (*FAILING_GRADES, "death")


def compare_runs(run_a: Path, run_b: Path, a: RunSummary, b: RunSummary) -> dict[str, Any]:
    """``a`` and ``b`` are the runs' summaries (``summarize``)."""
    variants_a = {v.variant_id: v for v in a.variants}
    variants_b = {v.variant_id: v for v in b.variants}
    both = [vid for vid in variants_a if vid in variants_b]
    return {
        "runs": [_run(a), _run(b)],
        "variants": [_variant(variants_a[vid], variants_b[vid]) for vid in both],
        "only_a": sorted(set(variants_a) - set(variants_b)),
        "only_b": sorted(set(variants_b) - set(variants_a)),
        "references": _references(run_a, run_b, a, b),
    }


def _run(summary: RunSummary) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "status": summary.status.value,
        "mnn_version": summary.mnn_version,
        "started": summary.started,
        "warnings": summary.warnings,
    }


def _failing(rates: Rates) -> dict[str, OutcomeRate]:
    """The outcomes ``FAILING`` names, in that order."""
    return {name: rate for name, rate in rates.items() if name in FAILING}


def _variant(a: VariantSummary, b: VariantSummary) -> dict[str, Any]:
    """Per failing outcome: both rates, and whether B differs beyond chance (the 95 %
    intervals do not overlap); the latency ratio B/A of the medians."""
    outcomes = {}
    failing_b = _failing(b.rates)
    for name, ra in _failing(a.rates).items():
        rb = failing_b[name]
        if not (ra.count or rb.count):
            continue
        outcomes[name] = {"a": ra.model_dump(), "b": rb.model_dump(), "change": _change(ra, rb)}
    ratio = None
    if a.latency_p50_ms and b.latency_p50_ms:
        ratio = b.latency_p50_ms / a.latency_p50_ms
    return {
        "variant_id": a.variant_id,
        "scenario": a.scenario,
        "label": a.label,
        "verdict": [a.verdict.value, b.verdict.value],
        "iterations": [a.iterations, b.iterations],
        "outcomes": outcomes,
        "latency_ratio": ratio,
    }


def _change(a: OutcomeRate, b: OutcomeRate) -> str:
    """``worse`` or ``better`` when the intervals are apart, else ``same`` (or ``unknown``
    when a side has no iterations)."""
    if not a.n or not b.n:
        return "unknown"
    if b.low > a.high:
        return "worse"
    if b.high < a.low:
        return "better"
    return "same"


def _references(run_a: Path, run_b: Path, a: RunSummary, b: RunSummary) -> list[dict[str, Any]]:
    """Per scenario output in both runs: equal digests, or how far B's reference is from
    A's under A's tolerance."""
    names = sorted(set(a.references) & set(b.references))
    refs_a, refs_b = load_references(run_a, names), load_references(run_b, names)
    manifest, _ = read_records(run_a)  # without it (damaged): the default tolerance
    scenarios = manifest.scenarios if manifest is not None else []
    tolerances = {s["name"]: s.get("tolerance", {}) for s in scenarios}
    found = []
    for (scenario, output), ra in sorted(refs_a.outputs.items()):
        rb = refs_b.get(scenario, output)
        entry = {"scenario": scenario, "output": output, "digests": [ra.digest, None]}
        if rb is None:
            found.append(entry | {"agreement": "missing in B"})
            continue
        entry["digests"][1] = rb.digest
        found.append(entry | _agreement(ra, rb, tolerances_for(tolerances.get(scenario), output)))
    return found


def _agreement(ra, rb, tolerance) -> dict[str, Any]:
    if ra.digest == rb.digest:
        return {"agreement": "exact"}
    if ra.values is None or rb.values is None or ra.values.shape != rb.values.shape:
        return {"agreement": "different (values not comparable)"}
    difference = compare(rb.values, ra.values, tolerance)
    return {
        "agreement": "close" if difference.passed else "mismatch",
        "max_abs": difference.max_abs,
        "differing": difference.differing,
    }


def regressed(comparison: dict[str, Any]) -> bool:
    """Whether B is worse: a failing rate beyond A's interval, a verdict that turned from ok
    (or a passing grade) into a finding, or references that mismatch."""
    for v in comparison["variants"]:
        if any(o["change"] == "worse" for o in v["outcomes"].values()):
            return True
        if v["verdict"][0] not in FINDINGS and v["verdict"][1] in FINDINGS:
            return True
    return any(r["agreement"] == "mismatch" for r in comparison["references"])


def render_comparison(comparison: dict[str, Any], console: Console) -> None:
    a, b = comparison["runs"]
    for tag, run in (("A", a), ("B", b)):
        console.print(
            f"{tag}: run {run['run_id']} ({run['status']}, MNN {run['mnn_version']}, "
            f"started {run['started']})",
            highlight=False,
        )
        print_warnings(run["warnings"], console, f"{tag}: ")
    for ref in comparison["references"]:
        if ref["agreement"] != "exact":
            extra = f", max|diff| {ref['max_abs']:.3g}" if "max_abs" in ref else ""
            console.print(
                f"reference {ref['scenario']}/{ref['output']}: {ref['agreement']}{extra}",
                highlight=False,
            )
    same = sum(r["agreement"] == "exact" for r in comparison["references"])
    console.print(f"{same} of {len(comparison['references'])} reference outputs bit-identical")
    for v in comparison["variants"]:
        console.print(_line(v), highlight=False)
    for tag in ("a", "b"):
        if comparison[f"only_{tag}"]:
            console.print(f"only in {tag.upper()}: {', '.join(comparison[f'only_{tag}'])}")


def _line(v: dict[str, Any]) -> str:
    verdicts = " -> ".join(dict.fromkeys(v["verdict"]))
    ratio = "" if v["latency_ratio"] is None else f"; latency x{v['latency_ratio']:.2f}"
    text = f"{v['variant_id']} {v['scenario']} {v['label']}: {verdicts}{ratio}"
    for name, o in v["outcomes"].items():
        text += (
            f"\n    {name} {o['change']}: A {describe(o['a']['count'], o['a']['n'])}, "
            f"B {describe(o['b']['count'], o['b']['n'])}"
        )
    return text
