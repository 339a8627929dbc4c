"""Graded outcomes against a clean reference, with real workers on real MNN: each grade is
produced on purpose by a test-only fault and must be counted where it happened; tolerances,
the reference's own settings and its absence are checked the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stress.analysis.grading import worst_mismatch
from stress.analysis.tolerance import Tolerance, compare, statistics_within, tolerances_for
from tests.conftest import read_iterations, read_traces, run_cli

SCENARIO = """
    name: graded
    model: tiny
    iterations: {iterations}
    max_crashes: 0
    {extra}
    matrix:
      api: [session, module]
"""


def graded_run(scenario_file, tmp_path, fault=None, iterations=12, extra="", *flags, **kw):
    """Run the tiny model on both APIs; the summary's variants by API, and the summary."""
    path = scenario_file(SCENARIO.format(iterations=iterations, extra=extra))
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), *flags, fault=fault, check=False, **kw)
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    by_api = {v["label"].removeprefix("api="): v for v in summary["variants"]}
    return by_api, summary, out


@pytest.mark.integration
def test_a_clean_run_is_exact_against_a_clean_single_threaded_session_reference(
    scenario_file, tmp_path
):
    by_api, summary, out = graded_run(scenario_file, tmp_path, trace=tmp_path / "trace")
    for variant in by_api.values():
        assert variant["grades"]["exact"] == variant["iterations"] == 12
        assert sum(variant["grades"].values()) == 12 and variant["verdict"] == "ok"
    assert summary["references"]["graded"]["problem"] is None
    (reference,) = read_traces(tmp_path / "trace", reference=True)
    assert reference["variant_id"] == "reference-graded"
    assert list(reference["calls"]) == ["0"] and reference["calls"]["0"]["run"] == 3
    assert reference["facts"]["0"]["sessions"] == 1  # the Session API, one thread
    rows = read_iterations(out / "reference")
    assert set(rows.api) == {"session"} and set(rows.threads) == {1}
    assert set(rows.input_path) == {"tensor_copy"} and set(rows.num_thread) == {1}
    assert rows["values"].notna().all()  # kept in full, to grade against
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reference"]["graded"]["status"] == "done"
    assert manifest["reference"]["graded"]["completed"] == 3


@pytest.mark.integration
def test_every_grade_is_counted_at_the_iteration_that_earned_it(scenario_file, tmp_path):
    """One variant, one fault per grade at known iterations; the other variant untouched."""
    fault = "nan@2?api=session,rc@4?api=session,mnn_raise@6?api=session"
    fault += ",ulp@8?api=session,perturb@10?api=session"
    by_api, _, out = graded_run(scenario_file, tmp_path, fault, iterations=13)
    session = by_api["session"]["grades"]
    assert session == {
        "exact": 8,
        "close": 1,
        "ungraded": 0,
        "mismatch": 1,
        "non_finite": 1,
        "invalid": 1,
        "error": 1,
    }
    assert by_api["module"]["grades"]["exact"] == 13
    worst = by_api["session"]["mismatch"]
    assert worst["basis"] == "values" and worst["rows"] == 1
    assert worst["max_abs"] == pytest.approx(1.0, rel=1e-6) and worst["differing"] == 1
    assert worst["first_index"] == [0, 0, 0, 0]
    assert by_api["session"]["rates"]["mismatch"]["count"] == 1
    assert by_api["session"]["rates"]["mismatch"]["n"] == 13
    rows = read_iterations(out)
    assert rows[rows.variant_id == by_api["session"]["variant_id"]].iteration.nunique() == 13


@pytest.mark.integration
def test_a_consistent_mismatch_is_its_own_verdict(scenario_file, tmp_path):
    by_api, _, _ = graded_run(scenario_file, tmp_path, "perturb@0+?api=module")
    assert by_api["module"]["grades"]["mismatch"] == 12
    assert by_api["module"]["distinct_outputs"] == 1  # consistent run to run, and wrong
    assert by_api["module"]["verdict"] == "MISMATCH"
    assert by_api["session"]["verdict"] == "ok"
    shown = run_cli("summary", str(tmp_path / "run")).stdout
    assert "mismatch in 12 of 12 iterations; worst: output 'y' (12 row(s) with these" in shown
    assert "graded by values" in shown


@pytest.mark.integration
def test_a_scenario_tolerance_turns_a_mismatch_into_close(scenario_file, tmp_path):
    extra = "tolerance: {statistic: max, atol: 2.0}"
    by_api, summary, _ = graded_run(scenario_file, tmp_path, "perturb@0+?api=module", 6, extra)
    assert by_api["module"]["grades"]["close"] == 6 and by_api["module"]["verdict"] == "ok"
    assert "max|diff| <= 2" in summary["references"]["graded"]["tolerance"]


@pytest.mark.integration
def test_without_stored_values_grading_falls_back_to_statistics_and_says_so(
    scenario_file, tmp_path
):
    """+1 on one element moves the mean by 1/size: within MNN's default tolerance, beyond a
    zero one; either way graded by statistics, and the summary says so."""
    extra = "record: {max_value_bytes: 0}"
    faults = "perturb@0+?api=module"
    by_api, _, _ = graded_run(scenario_file, tmp_path / "a", faults, 6, extra)
    assert by_api["module"]["grades"]["close"] == 6
    assert by_api["module"]["graded_by"] == {"close": ["statistics"]}
    extra += "\n    tolerance: {atol: 0, rtol: 0}"
    by_api, _, _ = graded_run(scenario_file, tmp_path / "b", faults, 6, extra)
    worst = by_api["module"]["mismatch"]
    assert by_api["module"]["grades"]["mismatch"] == 6
    assert worst["basis"] == "statistics" and worst["differing"] is None
    assert 0 < worst["max_abs"] <= 1.0  # a lower bound: the mean moved by 1/size
    assert by_api["module"]["graded_by"] == {"mismatch": ["statistics"]}
    assert by_api["session"]["graded_by"] == {}  # exact: by digest


@pytest.mark.integration
def test_without_a_reference_outputs_are_ungraded_and_the_summary_says_why(scenario_file, tmp_path):
    by_api, summary, out = graded_run(scenario_file, tmp_path, None, 5, "", "--no-reference")
    assert by_api["session"]["grades"]["ungraded"] == 5
    assert "no reference" in summary["references"]["graded"]["problem"]
    assert not (out / "reference").exists()


def test_unknown_tolerance_output_is_refused_naming_the_key(scenario_file):
    path = scenario_file("name: t\nmodel: tiny\ntolerance:\n  outputs:\n    nope: {atol: 1}\n")
    done = run_cli("validate", str(path), check=False)
    assert done.returncode != 0
    assert "tolerance.outputs.nope" in done.stderr and "no output 'nope'" in done.stderr


def test_a_bad_tolerance_statistic_is_refused(scenario_file):
    path = scenario_file("name: t\nmodel: tiny\ntolerance: {statistic: median}\n")
    done = run_cli("validate", str(path), check=False)
    assert done.returncode != 0 and "tolerance.statistic" in done.stderr


# --- the comparison itself ----------------------------------------------------------------


def test_mnn_default_tolerance_is_relative_to_the_largest_reference_magnitude():
    expected = np.array([100.0, 1.0, 0.0], np.float32)
    assert compare(expected + [0.9, 0, 0], expected, Tolerance()).passed  # 0.9 <= 1.0
    assert not compare(expected + [0, 0, 1.1], expected, Tolerance()).passed  # 1.1 > 1.0
    tiny = np.zeros(3, np.float32)
    assert compare(tiny + 1e-6, tiny, Tolerance()).passed  # floor: 0.01 x 1e-4
    assert not compare(tiny + 1e-5, tiny, Tolerance()).passed


def test_elementwise_holds_each_element_to_its_own_magnitude():
    expected = np.array([100.0, 1.0], np.float32)
    elementwise = Tolerance("elementwise", atol=0.0, rtol=0.01)
    assert compare(expected * 1.009, expected, elementwise).passed
    assert not compare(expected + [0, 0.5], expected, elementwise).passed  # fine for mnn
    assert compare(expected + [0, 0.5], expected, Tolerance()).passed


def test_statistics_mean_and_quantile_in_the_polygraphy_manner():
    expected = np.ones(100, np.float32)
    one_off = expected.copy()
    one_off[0] = 2.0  # one element off by 1: mean|diff| 0.01, max 1
    assert compare(one_off, expected, Tolerance("mean", atol=0.02, rtol=0)).passed
    assert not compare(one_off, expected, Tolerance("max", atol=0.02, rtol=0)).passed
    assert compare(one_off, expected, Tolerance("quantile", atol=0.0, rtol=0, quantile=0.9)).passed
    assert not compare(one_off, expected, Tolerance("quantile", 0.0, 0.0, 1.0)).passed


def test_compare_reports_where_and_how_much():
    expected = np.arange(6, dtype=np.float32).reshape(2, 3)
    actual = expected.copy()
    actual[1, 1] += 0.5
    actual[1, 2] += 2
    found = compare(actual, expected, Tolerance())
    assert found.differing == 2 and found.first_index == [1, 1]
    assert found.max_abs == pytest.approx(2.0) and found.mean_abs == pytest.approx(2.5 / 6)
    assert found.max_rel == pytest.approx(2 / 5)
    same = compare(expected, expected, Tolerance())
    assert same.differing == 0 and same.first_index is None and same.passed


def test_nan_never_passes_and_a_negative_zero_differs_in_bits():
    expected = np.zeros(2, np.float32)
    assert not compare(np.array([np.nan, 0], np.float32), expected, Tolerance("max", 1, 1)).passed
    negative = compare(np.array([-0.0, 0], np.float32), expected, Tolerance())
    assert negative.differing == 1 and negative.passed


def test_statistics_fallback_is_a_necessary_condition():
    assert statistics_within((0.0, 1.0, 0.5), (0.0, 1.0, 0.5), Tolerance())
    assert statistics_within((0.0, 1.005, 0.5), (0.0, 1.0, 0.5), Tolerance())
    assert not statistics_within((0.0, 1.02, 0.5), (0.0, 1.0, 0.5), Tolerance())
    assert not statistics_within((None, None, None), (0.0, 1.0, 0.5), Tolerance())


def test_per_output_tolerance_overrides_the_scenario_tolerance():
    spec = {"statistic": "max", "atol": 0.1, "outputs": {"prob": {"atol": 0.5}}}
    assert tolerances_for(spec, "prob") == Tolerance("max", 0.5, 0.01, 0.99)
    assert tolerances_for(spec, "other") == Tolerance("max", 0.1, 0.01, 0.99)
    assert tolerances_for(None, "x") == Tolerance()


@pytest.mark.integration
def test_calibrate_derives_a_tolerance_that_accepts_the_baseline_and_no_more(
    scenario_file, tmp_path
):
    """A baseline whose module outputs move by one ulp: calibrate proposes a tolerance just
    wide enough; with it, the same ulp grades close while a +1 still mismatches."""
    _, _, out = graded_run(scenario_file, tmp_path / "base", "ulp@0+?api=module", 6)
    found = json.loads(run_cli("calibrate", str(out), "--json").stdout)["graded"]["y"]
    assert found["by_values"] == 1 and found["distinct_outputs"] == 2
    assert 0 < found["rtol"] < 1e-5  # two ulps of the largest magnitude, about
    block = run_cli("calibrate", str(out)).stdout
    assert "tolerance:" in block and "y: {rtol:" in block
    extra = f"tolerance: {{statistic: mnn, rtol: {found['rtol']}}}"
    by_api, _, _ = graded_run(scenario_file, tmp_path / "a", "ulp@0+?api=module", 6, extra)
    assert by_api["module"]["grades"]["close"] == 6
    by_api, _, _ = graded_run(scenario_file, tmp_path / "b", "perturb@0+?api=module", 6, extra)
    assert by_api["module"]["grades"]["mismatch"] == 6


def readme_query(title: str, run_dir) -> str:
    """The SQL under docs/analysis.md's ``-- DuckDB: <title>`` comment, pointed at ``run_dir``."""
    text = (Path(__file__).parents[2] / "docs" / "analysis.md").read_text()
    start = text.index(f"-- DuckDB: {title}")
    end = min(i for i in (text.find("\n\n", start), text.find("\n```", start)) if i > 0)
    return text[start:end].replace("results/<run-id>", str(run_dir))


@pytest.mark.integration
def test_the_readme_query_for_exact_rows_agrees_with_the_summary(scenario_file, tmp_path):
    import duckdb

    by_api, _, out = graded_run(scenario_file, tmp_path, "perturb@3+?api=module")
    query = readme_query("per variant, iterations whose outputs are bit-identical", out)
    found = {vid: (exact, other) for vid, exact, other in duckdb.sql(query).fetchall()}
    for variant in by_api.values():
        grades = variant["grades"]
        assert found[variant["variant_id"]] == (
            grades["exact"],
            variant["iterations"] - grades["exact"],
        )


def test_the_worst_mismatch_is_the_same_whatever_order_the_outputs_come_in():
    """Found by a hostile review: outputs tied at the largest |diff| (3.4e38, one element
    become inf) were named in the order the query returned them, so the same run's summary
    named 284 then 288 differing elements from one call to the next."""
    tied = [
        {
            "grade": "mismatch",
            "basis": "values",
            "max_abs": 3.4e38,
            "differing": n,
            "output_name": "y",
            "digest": f"d{n}",
            "scenario": "s",
        }
        for n in (284, 288, 287)
    ]
    assert worst_mismatch(tied)["differing"] == 288
    assert worst_mismatch(tied[::-1]) == worst_mismatch(tied)
    clean = [{**tied[0], "grade": "close"}]
    assert worst_mismatch(clean) is None
