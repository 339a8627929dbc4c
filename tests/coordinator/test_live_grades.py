"""The live view's grades are the summary's: counted on each variant as its rows are written,
they end where the summary's grading of the whole run ends, iteration for iteration."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stress.analysis.live_grades import LiveGrader
from stress.analysis.references import ReferenceOutput, References
from stress.analysis.summary import summarize
from stress.coordinator.plan import Budget
from stress.coordinator.runner import execute
from tests.models.test_models import _onnx_model

pytestmark = pytest.mark.integration


def test_the_live_grades_end_where_the_summary_grades(tmp_path, monkeypatch):
    _onnx_model(tmp_path / "two.onnx", "features", "conv")  # the faults alter only the first
    scenario = tmp_path / "live.yaml"
    scenario.write_text(
        "name: live\nmodel: two.onnx\niterations: 40\n"
        "matrix:\n  api: [session, module]\n  num_thread: [1, 2]\n"
    )
    faults = "nan@5+?api=module,perturb@10+?num_thread=2,rc@30+?api=session"
    monkeypatch.setenv("MNN_STRESS_TEST_FAULT", faults)
    result = execute([scenario], tmp_path / "run", 2, Budget(), adaptive=False)
    live = {s.variant.variant_id: {g: n for g, n in s.grades.items() if n} for s in result.states}
    summary = summarize(tmp_path / "run")
    final = {v.variant_id: {g: n for g, n in v.grades.items() if n} for v in summary.variants}
    assert live == final
    seen = {grade for grades in final.values() for grade in grades}
    assert {"exact", "mismatch", "non_finite", "invalid"} <= seen
    assert all(sum(grades.values()) == 40 for grades in final.values())  # per iteration


def part(digests: list[str | None], statuses: list[str] | None = None) -> pa.Table:
    """Fetch rows of variant v, output y of scenario s, one iteration each."""
    n = len(digests)
    statuses = statuses or ["ok"] * n
    ok = [status == "ok" for status in statuses]
    return pa.table(
        {
            "variant_id": ["v"] * n,
            "thread": pa.array([0] * n, pa.int16()),
            "iteration": list(range(n)),
            "status": statuses,
            "observation": ["fetch"] * n,
            "scenario": ["s"] * n,
            "output_name": ["y" if good else None for good in ok],
            "digest": digests,
            "nan_count": [0 if good else None for good in ok],
            "inf_count": [0 if good else None for good in ok],
            "min": [0.0 if good else None for good in ok],
            "max": [1.0 if good else None for good in ok],
            "mean": [0.5 if good else None for good in ok],
            "values": pa.array([None] * n, pa.binary()),
            "dtype": ["float32" if good else None for good in ok],
            "shape": pa.array([[1] if good else None for good in ok], pa.list_(pa.int64())),
        }
    )


def test_a_digest_is_graded_once_and_an_unknown_one_waits_as_ungraded():
    grader = LiveGrader(References({}, {}), {})
    rows = part(["d", "d", None], ["ok", "ok", "error"])
    assert grader.count(rows) == {"v": {"ungraded": 2, "error": 1}}  # no reference
    assert list(grader.known) == ["s/y/d"]


def test_outputs_beyond_a_parts_grading_time_wait_as_ungraded_for_the_next(monkeypatch):
    """The coordinator has workers to drain: a part grades new outputs for MAX_GRADING_S,
    the rest count as ungraded and are graded with a later part."""
    monkeypatch.setattr("stress.analysis.live_grades.MAX_GRADING_S", 0.0)  # one a part
    reference = ReferenceOutput("s", "y", "ref", "float32", (1,), None, (0.0, 1.0, 0.5), 0, 1)
    grader = LiveGrader(References({("s", "y"): reference}, {}), {})
    assert grader.count(part(["ref", "a", "b"])) == {"v": {"exact": 1, "ungraded": 2}}
    assert grader.count(part(["ref", "a", "b"])) == {"v": {"exact": 1, "close": 1, "ungraded": 1}}
    assert grader.count(part(["ref", "a", "b"])) == {"v": {"exact": 1, "close": 2}}


def test_the_outputs_remembered_are_bounded_and_forgetting_changes_no_count(monkeypatch):
    """A night of racing threads makes millions of distinct outputs: the grader remembers at
    most MAX_KNOWN, starting afresh beyond; an output forgotten is graded again."""
    monkeypatch.setattr("stress.analysis.live_grades.MAX_KNOWN", 3)
    reference = ReferenceOutput("s", "y", "ref", "float32", (1,), None, (0.0, 1.0, 0.5), 0, 1)
    grader = LiveGrader(References({("s", "y"): reference}, {}), {})
    assert grader.count(part(["ref", "a"])) == {"v": {"exact": 1, "close": 1}}
    assert grader.count(part(["b", "c", "a"])) == {"v": {"close": 3}}
    assert len(grader.known) <= 3
    assert grader.count(part(["ref", "a", "b"])) == {"v": {"exact": 1, "close": 2}}


def test_a_bug_in_live_grading_stops_the_live_grades_and_says_it_is_ours(tmp_path, monkeypatch):
    from stress.coordinator.live import grading_rows

    def broken(self, rows):
        raise RuntimeError("on purpose")

    monkeypatch.setattr(LiveGrader, "count", broken)
    monkeypatch.setattr("stress.coordinator.live.load_references", lambda *_: References({}, {}))
    said: list[str] = []
    on_rows = grading_rows(tmp_path, [{"name": "s"}], [], said.append)
    on_rows(part(["d"]))
    on_rows(part(["d"]))  # stopped: not tried again
    assert said == [
        "live grades stopped: a bug of mnn-stress (RuntimeError: on purpose); the summary "
        "grades every row at the end all the same"
    ]
