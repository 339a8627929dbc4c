"""Graded outcomes: every iteration against its scenario's clean reference.

An output is ``exact`` (bit-identical to the reference), ``close`` (within the tolerance),
``mismatch``, or ``non_finite`` (NaN/Inf appeared); an iteration is ``invalid`` when MNN returned
an error code and ``error`` when it raised, whatever its outputs hold; ``ungraded`` when its
scenario has no usable reference. An iteration takes the worst grade of its outputs.

Outputs are graded once per distinct digest (equal bytes, equal grade), so a night of millions
of identical rows costs a handful of comparisons. A digest is compared value by value where
its values were stored, and by its statistics (min, max, mean) where they were not; the
``basis`` says which; by statistics, ``max_abs`` is a lower bound (the largest of the
differences of min, max and mean) and the other differences are unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stress.analysis.references import ReferenceOutput, References, stored_values
from stress.analysis.scan import Scan
from stress.analysis.tolerance import Tolerance, compare, statistics_within, tolerances_for
from stress.analysis.verdicts import Grade

GRADES = tuple(grade.value for grade in Grade)  # the words, in order of severity
SEVERITY = {grade.value: grade.severity for grade in Grade}
PASSING = tuple(grade.value for grade in Grade if grade.passing)
FAILING = tuple(grade.value for grade in Grade if not grade.passing)
MAX_VALUE_COMPARISONS = 20_000  # distinct digests compared value by value; the rest by statistics

_DIGEST_KEYS = ["scenario", "output_name", "digest"]
GRADE_SCHEMA = pa.schema(
    [
        *(pa.field(k, pa.string()) for k in _DIGEST_KEYS),
        pa.field("grade", pa.string()),
        pa.field("basis", pa.string()),  # digest, values, statistics, or none (no reference)
        pa.field("max_abs", pa.float64()),
        pa.field("mean_abs", pa.float64()),
        pa.field("max_rel", pa.float64()),
        pa.field("mean_rel", pa.float64()),
        pa.field("differing", pa.int64()),
        pa.field("first_index", pa.list_(pa.int64())),
    ]
)


@dataclass(frozen=True)
class DigestGrade:
    grade: str
    basis: str
    difference: dict[str, Any] | None = None  # max_abs ... first_index, for values


def distinct_outputs(scan: Scan) -> pa.Table:
    """One row per (scenario, output, digest) of ``ok`` fetch rows, with its statistics."""
    return scan.table(
        """SELECT scenario, output_name, digest, max(nan_count) AS nan_count,
                  max(inf_count) AS inf_count, max("min") AS "min", max("max") AS "max",
                  max(mean) AS mean
           FROM fetched WHERE status = 'ok' AND digest IS NOT NULL GROUP BY ALL"""
    )


def grade_digests(
    scan: Scan,
    distinct: pa.Table,
    references: References,
    tolerances: dict[str, dict[str, Any]],
) -> pa.Table:
    """The grade of every distinct output (``distinct_outputs``), as a GRADE_SCHEMA table."""
    graded: dict[tuple[str, str, str], DigestGrade] = {}
    needs_values: list[tuple[str, str, str]] = []
    for row in distinct.to_pylist():
        key = (row["scenario"], row["output_name"], row["digest"])
        reference = references.get(row["scenario"], row["output_name"])
        quick = _without_values(row, reference)
        if quick is None:
            needs_values.append(key)
        else:
            graded[key] = quick
    samples = _sample_values(scan, needs_values[:MAX_VALUE_COMPARISONS])
    for key, row in zip(needs_values, distinct_rows(distinct, needs_values)):
        tolerance = tolerances_for(tolerances.get(key[0]), key[1])
        graded[key] = grade_digest(row, references.get(*key[:2]), samples.get(key), tolerance)
    return _grade_table(graded)


def distinct_rows(distinct: pa.Table, keys: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    by_key = {(r["scenario"], r["output_name"], r["digest"]): r for r in distinct.to_pylist()}
    return [by_key[key] for key in keys]


def grade_digest(
    row: dict[str, Any],
    reference: ReferenceOutput | None,
    sample: tuple[np.ndarray, str] | None,
    tolerance: Tolerance,
) -> DigestGrade:
    """One distinct output (a ``distinct_outputs`` row) against its reference, its values
    (``sample``) compared where both sides kept them."""
    quick = _without_values(row, reference)
    if quick is not None or reference is None:
        return quick or DigestGrade("ungraded", "none")
    return _with_values(row, reference, sample, tolerance)


def _without_values(row: dict[str, Any], reference: ReferenceOutput | None) -> DigestGrade | None:
    """The grade where no values are needed, or None."""
    if (row["nan_count"] or 0) + (row["inf_count"] or 0):
        return DigestGrade("non_finite", "statistics")
    if reference is None:
        return DigestGrade("ungraded", "none")
    if row["digest"] == reference.digest:
        return DigestGrade("exact", "digest")
    return None


def _with_values(
    row: dict[str, Any],
    reference: ReferenceOutput,
    sample: tuple[np.ndarray, str] | None,
    tolerance: Tolerance,
) -> DigestGrade:
    """Compare values where both sides kept them; otherwise the statistics."""
    if sample is not None and reference.values is not None:
        actual, _ = sample
        if actual.shape != reference.values.shape:
            return DigestGrade("mismatch", "values", _shape_difference(actual))
        difference = compare(actual, reference.values, tolerance)
        fields = {k: v for k, v in vars(difference).items() if k != "passed"}
        return DigestGrade("close" if difference.passed else "mismatch", "values", fields)
    statistics = (row["min"], row["max"], row["mean"])
    close = statistics_within(statistics, reference.statistics, tolerance)
    return DigestGrade(
        "close" if close else "mismatch",
        "statistics",
        {"max_abs": _statistics_bound(statistics, reference.statistics)},
    )


def _statistics_bound(actual: tuple, expected: tuple) -> float | None:
    """A lower bound of max|diff| from the statistics alone: the largest of |d min|, |d max|
    and |d mean| (each is at most max|diff|)."""
    if None in actual or None in expected:
        return None
    return max(abs(a - e) for a, e in zip(actual, expected))


def _shape_difference(actual: np.ndarray) -> dict[str, Any]:
    return {"differing": int(actual.size), "first_index": None}


def _sample_values(
    scan: Scan, keys: list[tuple[str, str, str]]
) -> dict[tuple[str, str, str], tuple[np.ndarray, str]]:
    """One stored copy of each wanted digest's values: the array and its dtype."""
    if not keys:
        return {}
    wanted = pa.table({name: [k[i] for k in keys] for i, name in enumerate(_DIGEST_KEYS)})
    scan.register("wanted_digests", wanted)
    found = scan.table(
        """SELECT scenario, output_name, digest, any_value("values") AS "values",
                  any_value(dtype) AS dtype, any_value(shape) AS shape
           FROM fetched JOIN wanted_digests USING (scenario, output_name, digest)
           WHERE "values" IS NOT NULL GROUP BY ALL"""
    )
    samples = {}
    for row in found.to_pylist():
        array = stored_values(row)
        if array is not None:
            samples[(row["scenario"], row["output_name"], row["digest"])] = (array, row["dtype"])
    return samples


def _grade_table(graded: dict[tuple[str, str, str], DigestGrade]) -> pa.Table:
    rows = []
    for (scenario, output, digest), grade in graded.items():
        difference = grade.difference or {}
        rows.append(
            {
                "scenario": scenario,
                "output_name": output,
                "digest": digest,
                "grade": grade.grade,
                "basis": grade.basis,
                **{f: difference.get(f) for f in GRADE_SCHEMA.names[5:]},
            }
        )
    return pa.Table.from_pylist(rows, schema=GRADE_SCHEMA)


def iteration_grades(scan: Scan, grades: pa.Table, variants: list[str]) -> pa.Table:
    """Per (variant, grade) of ``variants``: iterations, each with the worst grade of its
    outputs, as columns variant_id, grade, iterations. (A variant all of whose ok outputs are
    exact needs no such pass: its ok iterations are its exact ones.)"""
    severity = pa.table({"grade": list(SEVERITY), "severity": list(SEVERITY.values())})
    scan.register("severities", severity)
    scan.register("digest_grades", grades.select([*_DIGEST_KEYS, "grade"]))
    scan.register("graded_variants", pa.table({"variant_id": pa.array(variants, pa.string())}))
    return scan.table(
        """WITH graded AS (
               SELECT f.variant_id, f.thread, f.iteration,
                      CASE WHEN f.status = 'ok' THEN coalesce(g.grade, 'ungraded')
                           ELSE f.status END AS grade
               FROM fetched f LEFT JOIN digest_grades g USING (scenario, output_name, digest)
               WHERE f.variant_id IN (SELECT variant_id FROM graded_variants)
           ), worst AS (
               SELECT variant_id, thread, iteration, max(s.severity) AS severity
               FROM graded JOIN severities s USING (grade) GROUP BY ALL
           )
           SELECT variant_id, s.grade, count(*) AS iterations
           FROM worst JOIN severities s USING (severity) GROUP BY ALL"""
    )


def undigested(scan: Scan) -> set[str]:
    """Variants with an ok output that has no digest (nothing could be read): ungraded."""
    found = scan.table(
        "SELECT DISTINCT variant_id FROM fetched WHERE status = 'ok' AND digest IS NULL"
    )
    return set(found["variant_id"].to_pylist())


def graded_outputs(scan: Scan, grades: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Per variant: each distinct output it produced that is not ``exact``, with its grade,
    basis, differences and the number of rows that had it."""
    inexact = grades.filter(pc.not_equal(grades["grade"], "exact"))
    if inexact.num_rows == 0:
        return {}
    by_key = {(g["scenario"], g["output_name"], g["digest"]): g for g in inexact.to_pylist()}
    scan.register("inexact_digests", inexact.select(_DIGEST_KEYS))
    seen = scan.table(
        """SELECT variant_id, scenario, output_name, digest, count(*) AS n
           FROM fetched JOIN inexact_digests USING (scenario, output_name, digest)
           WHERE status = 'ok' GROUP BY ALL"""
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in seen.to_pylist():
        grade = by_key[(row["scenario"], row["output_name"], row["digest"])]
        found.setdefault(row["variant_id"], []).append(grade | {"rows": row["n"]})
    return found


def worst_mismatch(outputs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The mismatch with the largest absolute difference (one graded by values first); a tie
    goes to the most differing elements, then the output's name and digest, so the same run
    always names the same one (outputs come from a query in no set order)."""
    mismatches = [o for o in outputs if o["grade"] == "mismatch"]
    if not mismatches:
        return None
    worst = max(mismatches, key=_badness)
    return {k: v for k, v in worst.items() if k not in ("scenario", "grade")}


def _badness(output: dict[str, Any]) -> tuple[bool, float, int, str, str]:
    return (
        output["basis"] == "values",
        output["max_abs"] or 0.0,
        output.get("differing") or 0,
        str(output["output_name"]),
        str(output["digest"]),
    )


def bases(outputs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per grade: how its outputs were graded (values, statistics, none)."""
    found: dict[str, set[str]] = {}
    for output in outputs:
        found.setdefault(output["grade"], set()).add(output["basis"])
    return {grade: sorted(basis) for grade, basis in sorted(found.items())}
