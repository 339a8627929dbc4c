"""The live view's grades are the summary's: counted on each variant as its rows are written,
they end where the summary's grading of the whole run ends, iteration for iteration."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stress.analysis.live_grades import LiveGrader
from stress.analysis.references import References
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


def test_a_digest_is_graded_once_and_an_unknown_one_waits_as_ungraded():
    grader = LiveGrader(References({}, {}), {})
    rows = pa.table(
        {
            "variant_id": ["v", "v", "v"],
            "thread": pa.array([0, 0, 0], pa.int16()),
            "iteration": [0, 1, 2],
            "status": ["ok", "ok", "error"],
            "observation": ["fetch", "fetch", "fetch"],
            "scenario": ["s", "s", "s"],
            "output_name": ["y", "y", None],
            "digest": ["d", "d", None],
            "nan_count": [0, 0, None],
            "inf_count": [0, 0, None],
            "min": [0.0, 0.0, None],
            "max": [1.0, 1.0, None],
            "mean": [0.5, 0.5, None],
            "values": pa.array([None, None, None], pa.binary()),
            "dtype": ["float32", "float32", None],
            "shape": pa.array([[1], [1], None], pa.list_(pa.int64())),
        }
    )
    assert grader.count(rows) == {"v": {"ungraded": 2, "error": 1}}  # no reference
    assert list(grader.known) == ["s/y/d"]
