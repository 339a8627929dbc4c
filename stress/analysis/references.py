"""The clean reference outputs of a run (``RUN_DIR/reference/``), one per scenario and output,
and what is wrong with them if anything is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from stress.analysis.dataset import events_table, iterations_table
from stress.analysis.tolerance import Tolerance, compare, tolerances_for
from stress.records.damage import set_aside_in
from stress.records.parts import sort_out
from stress.records.rundir import RunLayout

_COLUMNS = ["scenario", "iteration", "status", "error", "observation", "output_name", "digest"]
_COLUMNS += ["dtype", "shape", "nan_count", "inf_count", "min", "max", "mean"]
_VALUE_COLUMNS = ["output_name", "observation", "values"]


@dataclass(frozen=True)
class ReferenceOutput:
    """One output of a scenario's clean reference run."""

    scenario: str
    output_name: str
    digest: str
    dtype: str
    shape: tuple[int, ...]
    values: np.ndarray | None  # None when the output was too large to keep
    statistics: tuple[float | None, float | None, float | None]  # min, max, mean (finite)
    non_finite: int  # NaN and Inf elements
    digests: int  # distinct digests over the reference's iterations (1: stable)


@dataclass(frozen=True)
class References:
    outputs: dict[tuple[str, str], ReferenceOutput]
    problems: dict[str, str]  # per scenario: why its reference is missing or doubtful

    def get(self, scenario: str, output: str) -> ReferenceOutput | None:
        return self.outputs.get((scenario, output))


def load_references(run_dir: Path, scenarios: list[str]) -> References:
    """The first clean iteration's outputs of each scenario's reference, with problems noted:
    no reference run (``--no-reference``, or the run died first), a reference that raised,
    returned an error code or crashed, one not bit-identical run to run, or one with NaN/Inf."""
    reference = RunLayout(run_dir).reference
    root = reference.root
    table = _fetched(iterations_table(root, columns=_COLUMNS))
    deaths = events_table(root, columns=["scenario", "kind", "message"]).to_pylist()
    read = reference.iterations  # read above: its damaged parts are all known now
    damaged = bool(sort_out(read).damaged or set_aside_in(read, run_dir))
    outputs: dict[tuple[str, str], ReferenceOutput] = {}
    problems: dict[str, str] = {}
    for scenario in scenarios:
        rows = table.filter(pc.equal(table["scenario"], scenario)).to_pylist()
        _add_first_values(root, scenario, rows)
        died = [e for e in deaths if _of(e, scenario)]
        found, problem = _reference_of(scenario, rows, died, damaged)
        outputs.update({(scenario, out.output_name): out for out in found})
        if problem:
            problems[scenario] = problem
    return References(outputs, problems)


def _fetched(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(pc.fill_null(table["observation"], "fetch"), "fetch"))


def _add_first_values(root: Path, scenario: str, rows: list[dict[str, Any]]) -> None:
    """Each row's ``values``, read for the scenario's first iteration only (the one used): a
    big model's other iterations would cost their whole size for nothing."""
    if not rows:
        return
    first = min(r["iteration"] for r in rows)
    keep = (ds.field("scenario") == scenario) & (ds.field("iteration") == first)
    read = _fetched(iterations_table(root, columns=_VALUE_COLUMNS, filter=keep))
    values = {r["output_name"]: r["values"] for r in read.to_pylist()}
    for row in rows:
        row["values"] = values.get(row["output_name"]) if row["iteration"] == first else None


def _of(event: dict[str, Any], scenario: str) -> bool:
    return event["scenario"] == scenario


def _reference_of(
    scenario: str, rows: list[dict[str, Any]], deaths: list[dict[str, Any]], damaged: bool
) -> tuple[list[ReferenceOutput], str | None]:
    if not rows:
        why = f"{deaths[0]['kind']}: {deaths[0]['message']}" if deaths else "it did not run"
        why = "its rows are in a damaged part file" if damaged and not deaths else why
        return [], f"no reference ({why}): outputs are not graded"
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        return [], f"the reference run was {bad[0]['status']}: {bad[0]['error'] or ''}".strip()
    first = min(r["iteration"] for r in rows)
    found = [_output(scenario, r, rows) for r in rows if r["iteration"] == first]
    unstable = [o.output_name for o in found if o.digests > 1]
    non_finite = [o.output_name for o in found if o.non_finite]
    problem = None
    if unstable:
        problem = f"the reference differed between its own runs (outputs {', '.join(unstable)})"
    elif non_finite:
        problem = f"the reference has NaN/Inf (outputs {', '.join(non_finite)})"
    return found, problem


def stored_values(row: dict[str, Any]) -> np.ndarray | None:
    """A row's stored output values as an array of its dtype and shape (None: not stored)."""
    if row["values"] is None or not row["dtype"]:
        return None
    return np.frombuffer(row["values"], dtype=row["dtype"]).reshape(tuple(row["shape"] or ()))


def _output(scenario: str, row: dict[str, Any], rows: list[dict[str, Any]]) -> ReferenceOutput:
    name = row["output_name"]
    shape = tuple(row["shape"] or ())
    values = stored_values(row)
    return ReferenceOutput(
        scenario=scenario,
        output_name=name,
        digest=row["digest"],
        dtype=row["dtype"],
        shape=shape,
        values=values,
        statistics=(row["min"], row["max"], row["mean"]),
        non_finite=(row["nan_count"] or 0) + (row["inf_count"] or 0),
        digests=len({r["digest"] for r in rows if r["output_name"] == name}),
    )


def against_onnxruntime(
    run_dir: Path, scenario: str, references: References, tolerance: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Per output: MNN's clean reference graded against ONNX Runtime's outputs on the same
    inputs (``coordinator.onnx_reference``), with the scenario's tolerances; empty without them."""
    path = RunLayout(run_dir).onnxruntime / f"{scenario}.npz"
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        expected = {name: data[name] for name in data.files}
    found = {}
    for (name, output), reference in sorted(references.outputs.items()):
        if name != scenario:
            continue
        found[output] = _agreement(
            reference, expected.get(output), tolerances_for(tolerance, output)
        )
    return found


def _agreement(
    reference: ReferenceOutput, expected: np.ndarray | None, tolerance: Tolerance
) -> dict[str, Any]:
    if expected is None:
        return {"grade": "missing", "detail": "ONNX Runtime has no output of this name"}
    if reference.values is None:
        return {"grade": "ungraded", "detail": "the reference's values were not kept"}
    if reference.values.size != expected.size:
        detail = f"shape {list(reference.shape)} against {list(expected.shape)}"
        return {"grade": "mismatch", "detail": detail}
    actual = reference.values.reshape(expected.shape)
    if not np.isfinite(actual).all():
        return {"grade": "non_finite", "detail": "MNN's reference has NaN/Inf"}
    difference = compare(actual, expected.astype(actual.dtype, copy=False), tolerance)
    grade = "exact" if not difference.differing else "close" if difference.passed else "mismatch"
    return {
        "grade": grade,
        "max_abs": difference.max_abs,
        "max_rel": difference.max_rel,
        "differing": difference.differing,
        "elements": int(actual.size),
    }
