"""``mnn-stress calibrate``: tolerances derived from a clean baseline run.

Another ``num_thread`` or ``precision`` legitimately moves the last bits of an output; a run
over such variants, with nothing wrong in it, shows how far. Per scenario output: the largest
absolute difference from the reference over every distinct output graded by values, as a
fraction of the reference's largest magnitude (MNN's statistic), times a safety margin.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stress.analysis.dataset import check_run_dir
from stress.analysis.grading import distinct_outputs, grade_digests
from stress.analysis.references import load_references
from stress.analysis.scan import Scan
from stress.analysis.tolerance import MNN_FLOOR
from stress.records.manifest import read_manifest
from stress.records.rundir import RunLayout

_ZERO = {"statistic": "mnn", "atol": 0.0, "rtol": 0.0}  # every difference is measured


def calibrate(run_dir: Path, margin: float = 2.0) -> dict[str, dict[str, Any]]:
    """Per scenario and output: what was seen and the ``rtol`` to use (None when every
    output was exact)."""
    check_run_dir(run_dir)
    names = [s["name"] for s in read_manifest(run_dir).scenarios]
    references = load_references(run_dir, names)
    with Scan(RunLayout(run_dir).iterations) as scan:
        zero = dict.fromkeys(names, _ZERO)
        graded = grade_digests(scan, distinct_outputs(scan), references, zero).to_pylist()
    found: dict[str, dict[str, Any]] = {}
    for (scenario, output), reference in sorted(references.outputs.items()):
        mine = [g for g in graded if (g["scenario"], g["output_name"]) == (scenario, output)]
        magnitude = _magnitude(reference)
        measured = [g["max_abs"] for g in mine if g["basis"] == "values"]
        widest = max(measured, default=0.0)
        ratio = widest / magnitude if magnitude else None
        found.setdefault(scenario, {})[output] = {
            "distinct_outputs": len(mine),
            "by_values": len(measured),
            "by_statistics": sum(g["basis"] == "statistics" for g in mine),
            "non_finite": sum(g["grade"] == "non_finite" for g in mine),
            "max_abs": widest,
            "ratio": ratio,
            "rtol": None if not ratio else _round_up(ratio * margin),
        }
    return found


def _magnitude(reference) -> float | None:
    if reference.values is not None:
        return max(float(abs(reference.values.astype("float64")).max(initial=0)), MNN_FLOOR)
    low, high, _ = reference.statistics
    return None if low is None else max(abs(low), abs(high), MNN_FLOOR)


def _round_up(value: float) -> float:
    """Up to one significant digit: 2.3e-07 -> 3e-07."""
    exponent = math.floor(math.log10(value))
    return math.ceil(value / 10**exponent) * 10**exponent


def as_yaml(found: dict[str, dict[str, Any]]) -> str:
    """A ``tolerance:`` block per scenario, with what it was derived from as comments."""
    lines = []
    for scenario, outputs in found.items():
        lines.append(f"# scenario {scenario}")
        lines.append("tolerance:")
        lines.append("  statistic: mnn")
        lines.append("  outputs:")
        for output, seen in outputs.items():
            lines.append(
                f"    # {output}: {seen['distinct_outputs']} distinct output(s), "
                f"{seen['by_values']} compared by values, widest max|diff| {seen['max_abs']:.3g}"
                + (f", {seen['non_finite']} non-finite (left out)" if seen["non_finite"] else "")
                + (
                    f", {seen['by_statistics']} without stored values"
                    if seen["by_statistics"]
                    else ""
                )
            )
            rtol = 0.0 if seen["rtol"] is None else seen["rtol"]
            lines.append(f"    {output}: {{rtol: {rtol:.1e}}}")
    return "\n".join(lines) + "\n"
