"""The live view's grades are the summary's: counted on each variant as its rows are written,
they end where the summary's grading of the whole run ends, iteration for iteration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pyarrow as pa
import pytest
from onnx import TensorProto, helper, numpy_helper

from stress.analysis.live_grades import LiveGrader
from stress.analysis.references import References
from stress.analysis.summary import summarize
from stress.coordinator.plan import Budget
from stress.coordinator.runner import execute

pytestmark = pytest.mark.integration


def two_outputs(path: Path) -> Path:
    """A model with two outputs (the faults alter only the first): an iteration takes the
    worst grade of its outputs, not one count per output."""
    weight = numpy_helper.from_array(np.full((4, 2, 3, 3), 0.1, np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["features"]),
        ],
        "two_outputs",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 8, 8])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 4, 8, 8]),
            helper.make_tensor_value_info("conv", TensorProto.FLOAT, [1, 4, 8, 8]),
        ],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_the_live_grades_end_where_the_summary_grades(tmp_path, monkeypatch):
    two_outputs(tmp_path / "two.onnx")
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
