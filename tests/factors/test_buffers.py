"""Input paths, input and output buffer lifetimes and misuse, really applied in real workers
on real MNN (3.6.1): the worker's test-only trace proves each action happened, the rows and
events show what MNN made of it."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.conftest import read_events, read_iterations, read_traces, run_cli

pytestmark = pytest.mark.integration

TINY = """
    name: buffers
    model: tiny
    iterations: {iterations}
    max_crashes: {max_crashes}
    matrix:
"""


def run_matrix(scenario_file, tmp_path: Path, matrix: dict, iterations: int = 12, **kw):
    """Run a matrix on the tiny model with a trace: (run dir, rows, events, traces by
    variant id). No clean reference pass (one worker start less): what these tests check,
    verdicts included (REFUSED, QUARANTINED, VIEW_CHANGED, CRASHED), does not depend on it."""
    text = TINY.format(iterations=iterations, max_crashes=kw.pop("max_crashes", 1))
    text += "".join(f"      {key}: [{', '.join(values)}]\n" for key, values in matrix.items())
    out, trace = tmp_path / "run", tmp_path / "trace"
    args = ("--out", str(out), "--no-reference")
    run_cli("run", str(scenario_file(text)), *args, trace=trace, check=False, **kw)
    traces = {report["variant_id"]: report for report in read_traces(trace)}
    events = read_events(out)
    if events is None:
        events = pd.DataFrame(columns=["variant_id", "kind", "message", "in_flight"])
    return out, read_iterations(out), events, traces


def by_value(rows: pd.DataFrame, key: str) -> dict[str, str]:
    return dict(zip(rows[key], rows.variant_id))


def summary_of(out: Path) -> dict[str, dict]:
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    return {v["variant_id"]: v for v in summary["variants"]}


LIFETIMES = ["copy", "borrowed", "mutated", "freed", "unmapped", "gc_churn", "strided", "fortran"]


@pytest.mark.parametrize("api", ["session", "module"])
def test_every_input_lifetime_is_applied_before_the_run(scenario_file, tmp_path, api):
    iterations = 12
    out, rows, _, traces = run_matrix(
        scenario_file, tmp_path, {"api": [api], "input_lifetime": LIFETIMES}, iterations
    )
    ids = by_value(rows, "input_lifetime")
    assert sorted(ids) == sorted(LIFETIMES)

    def facts(value: str) -> dict:
        return traces[ids[value]]["facts"]["0"]

    def fed(value: str) -> dict:
        return traces[ids[value]]["fed"]

    arrays = iterations  # tiny has one input, fed once per iteration
    assert fed("copy") == {"arrays": arrays, "non_contiguous": 0, "not_owning": 0, "read_only": 0}
    assert fed("borrowed")["read_only"] == fed("borrowed")["not_owning"] == arrays
    assert facts("mutated")["mutated_before_run"] == iterations
    assert facts("freed")["freed"] == facts("freed")["freed_poisoned"] == arrays
    assert facts("freed")["freed_reused"] > 0  # glibc handed the freed block back, poisoned
    assert fed("freed")["not_owning"] == fed("unmapped")["not_owning"] == arrays  # not numpy's
    assert facts("unmapped")["unmapped"] == arrays
    assert facts("unmapped")["unmapped_verified"] == 8  # gone from /proc/self/maps
    assert facts("gc_churn")["churned_collected"] == facts("gc_churn")["churned"] == arrays
    assert fed("gc_churn")["not_owning"] == 0
    assert fed("strided")["non_contiguous"] == fed("fortran")["non_contiguous"] == arrays
    # What MNN 3.6.1 makes of it: every path copies the array at once, so nothing changes.
    assert rows.groupby("output_name").digest.nunique().max() == 1
    assert (rows.status == "ok").all() and len(rows) == len(LIFETIMES) * iterations


SESSION_PATHS = ["tensor_copy", "nhwc", "nc4hw4", "host_write"]
MODULE_PATHS = ["const", "numpy_array", "placeholder"]


def test_every_input_path_reaches_mnn_with_the_same_result(scenario_file, tmp_path):
    """Each path's correct use gives the bytes of the default path (MNN 3.6.1): the layouts
    are converted right, and a row records the path that was taken."""
    matrix = {"api": ["session", "module"], "input_path": SESSION_PATHS + MODULE_PATHS}
    text_exclude = "    exclude:\n"
    text_exclude += f"      - {{api: session, input_path: [{', '.join(MODULE_PATHS)}]}}\n"
    text_exclude += f"      - {{api: module, input_path: [{', '.join(SESSION_PATHS)}]}}\n"
    text = TINY.format(iterations=5, max_crashes=0)
    text += "".join(f"      {k}: [{', '.join(v)}]\n" for k, v in matrix.items()) + text_exclude
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(text)), "--out", str(out), "--no-reference")
    rows = read_iterations(out)
    assert sorted(rows.input_path.unique()) == sorted(SESSION_PATHS + MODULE_PATHS)
    assert (rows.status == "ok").all()
    assert rows.digest.nunique() == 1
    assert set(rows[rows.api == "module"].input_path) == set(MODULE_PATHS)


def test_retained_views_are_read_again_as_rows_of_their_iteration(scenario_file, tmp_path):
    iterations = 20
    matrix = {"api": ["session", "module"], "output_lifetime": ["retained"], "threads": ["2"]}
    out, rows, events, traces = run_matrix(scenario_file, tmp_path, matrix, iterations)
    assert not events.kind.isin(["harness", "crash"]).any()
    fetched = rows[rows.observation == "fetch"]
    later = rows[rows.observation == "retained"]
    for api in ("session", "module"):
        # Each thread's first 8 iterations, read again once, beside their fetch rows.
        mine = later[later.api == api]
        assert sorted(mine.groupby("thread").iteration.apply(sorted).tolist()) == [
            list(range(8)),
            list(range(8)),
        ]
        assert len(fetched[fetched.api == api]) == 2 * iterations
        assert traces[mine.variant_id.iloc[0]]["facts"]["0"]["views_kept"] == 8
        assert traces[mine.variant_id.iloc[0]]["facts"]["0"]["kept_owning"] == 0  # MNN's views
    summary = summary_of(out)
    session = summary[later[later.api == "session"].variant_id.iloc[0]]
    # A session's output view is the output tensor's memory: the run on other inputs after
    # the loop rewrote every kept view (MNN 3.6.1).
    assert (session["views_rechecked"], session["views_changed"]) == (16, 16)
    assert session["verdict"] == "VIEW_CHANGED"
    assert (session["iterations"], session["completed"]) == (40, 40)  # later rows are not more
    assert session["distinct_outputs"] == 1  # the changed later reads are not outputs
    manifest = json.loads((out / "manifest.json").read_text())
    for vid in summary:  # later rows did not move any thread's progress back
        assert manifest["variants"][vid]["next_iterations"] == [iterations, iterations]
    # The DuckDB query of docs/analysis.md finds the same changed views as the summary.
    parts = f"'{out}/iterations/*.parquet'"
    changed = duckdb.sql(
        f"""SELECT l.variant_id, count(*) AS n FROM read_parquet({parts}) l
        JOIN read_parquet({parts}) f USING (variant_id, thread, iteration, output_name)
        WHERE l.observation <> 'fetch' AND f.observation = 'fetch'
          AND l.digest IS DISTINCT FROM f.digest GROUP BY ALL"""
    ).fetchall()
    assert {vid: n for vid, n in changed} == {
        vid: v["views_changed"] for vid, v in summary.items() if v["views_changed"]
    }


def test_views_read_after_release_are_rows_or_a_crash(scenario_file, tmp_path):
    matrix = {"api": ["session", "module"], "output_lifetime": ["after_release"]}
    out, rows, events, traces = run_matrix(scenario_file, tmp_path, matrix, iterations=10)
    assert not (events.kind == "harness").any()
    summary = summary_of(out)
    for vid, variant in summary.items():
        later = rows[(rows.variant_id == vid) & (rows.observation == "after_release")]
        crashed = events[(events.variant_id == vid) & (events.kind == "crash")]
        if vid in traces:  # the worker lived: its binding held no MNN object at the end
            held = traces[vid]["facts"]["0"]
            api = rows[rows.variant_id == vid].api.iloc[0]
            assert held["interpreter" if api == "session" else "module"] is None
            assert traces[vid]["last_look"] == {"views": 8, "poisoned": 8}
        # Either every kept view was read after release, or reading one killed the worker
        # after all its iterations were recorded (nothing was in flight).
        assert len(later) == 8 or len(crashed) == 1, variant
        assert variant["iterations"] == 10
        for in_flight in crashed.in_flight:  # the worker had said it was done
            assert in_flight is None or all(i is None for i in in_flight)


def test_a_misuse_that_fails_at_setup_ends_its_variant_once(scenario_file, tmp_path):
    """unknown_output: MNN refuses the output name while the worker sets up; the variant ends
    ``refused`` after one worker, while a misuse that fails per iteration makes rows."""
    matrix = {"api": ["session", "module"], "misuse": ["unknown_output", "wrong_dtype"]}
    out, rows, events, _ = run_matrix(scenario_file, tmp_path, matrix, iterations=5, max_crashes=3)
    summary = summary_of(out)
    refused = [v for v in summary.values() if "unknown_output" in v["label"]]
    assert [v["verdict"] for v in refused] == ["REFUSED", "REFUSED"]
    for variant in refused:
        mine = events[events.variant_id == variant["variant_id"]]
        assert mine.kind.tolist() == ["exception"]  # one worker, no retries, no quarantine
        assert mine.message.iloc[0].startswith("MNNError: ")  # MNN raised, not our code
    wrong = rows[rows.misuse == "wrong_dtype"]
    assert len(wrong) == 10 and (wrong.status == "error").all()
    assert wrong.error.str.contains("numpy type does not match").all()


def test_a_setup_failure_without_misuse_is_still_retried(scenario_file, tmp_path):
    """The ``refused`` ending is only for misuse: the same failure elsewhere is a death that
    is retried until quarantine."""
    matrix = {"misuse": ["none", "wrong_rank"]}
    out, _, events, _ = run_matrix(
        scenario_file, tmp_path, matrix, iterations=5, max_crashes=2, fault="load_error@0"
    )
    summary = {v["label"]: v for v in summary_of(out).values()}
    assert summary["misuse=none"]["verdict"] == "QUARANTINED"
    assert summary["misuse=none"]["events"]["exception"] == 3
    assert summary["misuse=wrong_rank"]["verdict"] == "REFUSED"
    assert summary["misuse=wrong_rank"]["events"]["exception"] == 1


SESSION_MISUSES = ["missing_input", "extra_input", "wrong_rank", "wrong_dtype", "from_numpy"]
SESSION_MISUSES += ["bare_ndarray", "untyped_tensor", "unknown_output"]
MODULE_MISUSES = ["missing_input", "extra_input", "wrong_rank", "wrong_dtype", "bare_ndarray"]
MODULE_MISUSES += ["unknown_output"]


@pytest.mark.parametrize(
    ("api", "misuses"), [("session", SESSION_MISUSES), ("module", MODULE_MISUSES)]
)
def test_every_misuse_is_a_finding_never_a_harness_error(scenario_file, tmp_path, api, misuses):
    """Each misuse ends as MNN's outcome (rows, error/invalid rows, deaths, refused), made on
    the default path, never as a failure of ours."""
    matrix = {"api": [api], "misuse": misuses}
    out, rows, events, _ = run_matrix(scenario_file, tmp_path, matrix, iterations=3, max_crashes=0)
    assert not events.kind.isin(["harness"]).any()
    summary = summary_of(out)
    assert len(summary) == len(misuses)
    for variant in summary.values():
        assert variant["verdict"] not in ("HARNESS_ERROR", "EMPTY", "ok") or (
            variant["verdict"] == "ok" and variant["iterations"] == 3
        ), variant
    assert (rows.input_path == ("tensor_copy" if api == "session" else "const")).all()


def test_a_short_variant_keeps_every_iteration_and_not_the_run_after_it(scenario_file, tmp_path):
    matrix = {"api": ["session"], "output_lifetime": ["retained"]}
    _, rows, _, traces = run_matrix(scenario_file, tmp_path, matrix, iterations=5)
    later = rows[rows.observation == "retained"]
    assert sorted(later.iteration) == [0, 1, 2, 3, 4]
    (trace,) = traces.values()
    assert trace["last_look"] == {"views": 5, "poisoned": 0}  # retained: nothing released


def test_a_misuse_variant_that_dies_after_set_up_is_retried(scenario_file, tmp_path):
    """Only a failure before the first iteration is a misuse's refusal: a death after it is
    a death like any other (retried, then quarantined)."""
    matrix = {"misuse": ["wrong_rank"]}
    out, _, events, _ = run_matrix(
        scenario_file, tmp_path, matrix, iterations=6, max_crashes=1, fault="segv@2+"
    )
    (variant,) = summary_of(out).values()
    assert variant["verdict"] == "QUARANTINED"
    assert variant["events"]["crash"] == 2


def test_a_death_in_the_last_look_has_nothing_in_flight(scenario_file, tmp_path):
    """On MNN 3.6.1, reading three_input's Session API output view after its Interpreter is
    gone kills the worker (3 of 3 runs). With a time budget the coordinator cannot tell from
    the budget that the loop had ended: the worker's ``done`` came first, so the death costs
    no iteration and every fetch row is there."""
    text = """
    name: last_look
    model: three_input
    duration: 1s
    max_crashes: 3
    matrix:
      output_lifetime: [after_release]
    """
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(text)), "--out", str(out), "--no-reference", check=False)
    (event,) = read_events(out).itertuples()  # one death: the variant's time was used up
    assert (event.kind, event.signal) == ("crash", "SIGSEGV")
    assert pd.isna(event.iteration) and all(pd.isna(i) for i in event.in_flight)
    (variant,) = summary_of(out).values()
    assert variant["iterations"] == variant["completed"] > 0
    assert variant["verdict"] == "CRASHED"
