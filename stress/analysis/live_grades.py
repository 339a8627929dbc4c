"""Grades while a run goes on: what the summary will say of each fetched iteration, counted
per variant as its rows are written (the live view). The rules are ``grading``'s: each distinct
output graded once against its scenario's clean reference, an iteration taking the worst grade
of its outputs, one that MNN failed taking its status. Where a part brings more new outputs
than MAX_GRADING_S grades, the rest count as ``ungraded`` (live only: the summary grades all)."""

from __future__ import annotations

import collections
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stress.analysis.grading import GRADES, SEVERITY, grade_digest
from stress.analysis.references import References, stored_values
from stress.analysis.tolerance import tolerances_for

_KEY = ["scenario", "output_name", "digest"]
_STATISTICS = ["nan_count", "inf_count", "min", "max", "mean", "values", "dtype", "shape"]
_COLUMNS = ["variant_id", "thread", "iteration", "status", "observation", *_KEY, *_STATISTICS]
# Time a part's new distinct outputs may take to grade (a 256 MiB output compared value by
# value takes a good part of a second; racing threads make thousands of distinct outputs a
# second): the rest count as ``ungraded`` live, the summary grades them at the end, and an
# output seen again is graded with its later part. The coordinator stays responsive, and
# holds one output's values at a time.
MAX_GRADING_S = 0.1  # of a part, written every 0.5 s at most (recorder.FLUSH_S)
MAX_KNOWN = 200_000  # distinct outputs remembered (a few tens of MiB); beyond, forgotten


class LiveGrader:
    """Counts the grades of rows as they are written, remembering each distinct output's."""

    def __init__(self, references: References, tolerances: dict[str, dict[str, Any]]) -> None:
        self.references = references
        self.tolerances = tolerances
        self.known: dict[str, int] = {}  # "scenario/output/digest" -> severity

    def count(self, rows: pa.Table) -> dict[str, collections.Counter[str]]:
        """Per variant, its fetched iterations among ``rows`` by grade."""
        rows = rows.select(_COLUMNS)  # no copy; a filter copies only these
        fetched = pc.equal(rows["observation"].cast(pa.string()), "fetch")
        if not pc.all(fetched).as_py():
            rows = rows.filter(fetched)
        if rows.num_rows == 0:
            return {}
        keys = _keys(rows)
        self._grade_new(rows, keys)
        severity = self._severities(rows, keys)
        iterations = pa.table(
            {
                "variant_id": rows["variant_id"].cast(pa.string()),
                "thread": rows["thread"],
                "iteration": rows["iteration"],
                "severity": severity,
                "output_name": rows["output_name"].cast(pa.string()),
            }
        )
        counted = _worst(iterations).group_by(["variant_id", "severity"], use_threads=False)
        counted = counted.aggregate([("iteration", "count")])
        found: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for vid, level, n in zip(*(counted[c].to_pylist() for c in counted.column_names)):
            found[vid][GRADES[level]] += n
        return dict(found)

    def _grade_new(self, rows: pa.Table, keys: pa.ChunkedArray) -> None:
        """Grade the distinct outputs of this part not seen before (their first row stands
        for them), for at most MAX_GRADING_S. Lookups go by this part's distinct outputs, so a
        part costs the same however many the run has seen."""
        ok = pc.and_(pc.equal(rows["status"].cast(pa.string()), "ok"), pc.is_valid(keys))
        where = pa.table({"key": keys, "row": pa.array(np.arange(rows.num_rows))}).filter(ok)
        first = where.group_by("key", use_threads=False).aggregate([("row", "min")])
        found = [(k, i) for k, i in zip(*(first[c].to_pylist() for c in ("key", "row_min")))]
        new = [(key, index) for key, index in found if key not in self.known]
        if len(self.known) + len(new) > MAX_KNOWN:  # a night of racing outputs: start afresh
            self.known.clear()
            new = found
        columns, deadline = rows.select([*_KEY, *_STATISTICS]), time.monotonic() + MAX_GRADING_S
        for key, index in new:
            (row,) = columns.slice(index, 1).to_pylist()  # one output's values at a time
            self.known[key] = SEVERITY[self._grade(row)]
            if time.monotonic() > deadline:  # the coordinator has workers to drain
                break

    def _grade(self, row: dict[str, Any]) -> str:
        scenario, output = row["scenario"], row["output_name"]
        reference = self.references.get(scenario, output)
        values = stored_values(row)
        sample = None if values is None else (values, row["dtype"])
        tolerance = tolerances_for(self.tolerances.get(scenario), output)
        return grade_digest(row, reference, sample, tolerance).grade

    def _severities(self, rows: pa.Table, keys: pa.ChunkedArray) -> pa.Array:
        """Each row's severity: its status where MNN failed, else its output's grade (an
        output not graded yet, or with no digest, counts as ``ungraded``)."""
        distinct = pc.unique(keys).drop_null()
        levels = pa.array([self.known.get(k) for k in distinct.to_pylist()], pa.int64())
        graded = pc.take(levels, pc.index_in(keys, value_set=distinct))
        graded = pc.fill_null(graded, SEVERITY["ungraded"])
        status = rows["status"].cast(pa.string())
        by_status = pc.fill_null(pc.take(_STATUS_LEVELS, pc.index_in(status, _STATUS_WORDS)), 0)
        ok = pc.equal(status, "ok")
        return pc.if_else(ok, graded, by_status).combine_chunks()


_STATUS_WORDS = pa.array(["invalid", "error"], pa.string())
_STATUS_LEVELS = pa.array([SEVERITY["invalid"], SEVERITY["error"]], pa.int64())


def _worst(rows: pa.Table) -> pa.Table:
    """One row per iteration with the worst severity of its outputs. Where every row names
    the same output (or none: MNN failed), each row is an iteration already."""
    if pc.count_distinct(rows["output_name"]).as_py() <= 1:
        return rows
    worst = rows.group_by(["variant_id", "thread", "iteration"], use_threads=False)
    return worst.aggregate([("severity", "max")]).rename_columns(
        ["variant_id", "thread", "iteration", "severity"]
    )


def _keys(rows: pa.Table) -> pa.ChunkedArray:
    """scenario/output/digest of each row (null where it has no digest)."""
    parts = [rows[c].cast(pa.string()) for c in _KEY]
    return pc.binary_join_element_wise(*parts, "/")
