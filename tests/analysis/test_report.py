"""``mnn-stress report``: the morning view and its exit status, and the leak and drift
detector it shows, on real runs and on rows made to a known slope."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from stress.analysis.drift import LEAK_BYTES_PER_1K, MIN_RATE_SPAN_S, drift
from stress.analysis.verdicts import Verdict
from tests.conftest import run_cli

SCENARIO = """
    name: morning
    model: tiny
    iterations: {iterations}
    matrix:
      api: [session, module]
"""


def reported(scenario_file, tmp_path, fault=None, iterations=20):
    path = scenario_file(SCENARIO.format(iterations=iterations))
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), fault=fault)
    return run_cli("report", str(out), check=False), out


@pytest.mark.integration
def test_a_clean_run_reports_exit_0_and_what_it_rules_out(scenario_file, tmp_path):
    done, out = reported(scenario_file, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("nothing wrong: 0 of 20 (< 15 % at 95 %)") == 2
    assert "2 ok" in done.stdout and "nothing failed in 40 iterations" in done.stdout
    as_json = json.loads(run_cli("report", str(out), "--json").stdout)
    assert as_json == json.loads(run_cli("summary", str(out), "--json").stdout)
    page = tmp_path / "morning.html"
    assert run_cli("report", str(out), "--html", str(page)).returncode == 0
    assert "<svg" in page.read_text() and "2 ok" in page.read_text()


@pytest.mark.integration
def test_any_failing_outcome_makes_the_report_exit_1_for_cron(scenario_file, tmp_path):
    done, out = reported(scenario_file, tmp_path, "perturb@3+?api=module")
    assert done.returncode == 1
    assert "MISMATCH" in done.stdout or "INCONSISTENT" in done.stdout
    assert "mismatch: 17 of 20" in done.stdout and "worst mismatch: output 'y'" in done.stdout
    assert "failures only with api=module" in done.stdout
    assert run_cli("summary", str(out)).returncode == 0  # summary only shows


@pytest.mark.integration
def test_a_close_run_is_not_a_finding(scenario_file, tmp_path):
    done, _ = reported(scenario_file, tmp_path, "ulp@0+?api=module")
    assert done.returncode == 0, done.stdout
    assert "close 20" in done.stdout


@pytest.mark.integration
def test_a_leaking_slowing_worker_is_flagged(scenario_file, tmp_path):
    """The leak fault keeps 256 KiB per iteration; the slow fault sleeps 50 us longer each
    time (which also spreads the iterations over RSS samples, taken every 0.2 s)."""
    done, out = reported(scenario_file, tmp_path, "leak@0+?api=module,slow@0+?api=module", 300)
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    by_api = {v["label"]: v for v in summary["variants"]}
    leaking, clean = by_api["api=module"]["drift"], by_api["api=session"]["drift"]
    assert leaking["flags"] == ["rss_growth", "latency_drift"]
    assert by_api["api=module"]["verdict"] == "LEAK" and by_api["api=session"]["verdict"] == "ok"
    assert done.returncode == 1  # a leak is a finding: cron hears of it
    assert leaking["rss_bytes_per_1k_iterations"] == pytest.approx(256 << 20, rel=0.35)
    assert leaking["latency_trend"] > 5
    assert clean["flags"] == []
    assert abs(clean["rss_bytes_per_1k_iterations"]) < LEAK_BYTES_PER_1K
    assert "flagged: rss_growth, latency_drift" in done.stdout


# --- the fit itself, on rows of a known slope ----------------------------------------------


def rows(rss, latency, workers=1) -> pa.Table:
    """One row per iteration; each further worker continues where the last stopped (as a
    replacement does) with its own RSS starting afresh."""
    n = len(rss)
    return pa.table(
        {
            "variant_id": ["v"] * n * workers,
            "worker_id": np.repeat(np.arange(workers, dtype=np.int32), n),
            "iteration": np.arange(n * workers, dtype=np.int64),
            "ts": pa.array(
                np.tile(np.arange(n, dtype=np.int64) * 10_000_000, workers), pa.int64()
            ).cast(pa.timestamp("ns", tz="UTC")),
            "rss_bytes": np.tile(np.asarray(rss, dtype=np.int64), workers),
            "latency_ns": np.tile(np.asarray(latency, dtype=np.int64), workers),
        }
    )


def test_the_slope_is_exact_on_a_straight_line_and_warm_up_is_left_out():
    rss = (100 << 20) + np.arange(1000) * 1024  # 1 KiB per iteration, 10 ms apart
    rss[:50] = 10  # warm-up noise: excluded (the first 10 %)
    found = drift(rows(rss, np.full(1000, 1000)))["v"]
    assert found["rss_bytes_per_1k_iterations"] == pytest.approx(1024 * 1000)
    assert found["rss_bytes_per_hour"] == pytest.approx(1024 * 100 * 3600)
    assert found["latency_trend"] == pytest.approx(1.0)
    assert found["fitted_iterations"] == 900


def test_a_flat_rss_with_noise_is_not_flagged_and_a_real_leak_is():
    noise = np.random.default_rng(0).integers(0, 4096, 1000)
    assert drift(rows((200 << 20) + noise, np.full(1000, 10)))["v"]["flags"] == []
    leak = (200 << 20) + np.arange(1000) * (128 << 10)  # 128 MiB per 1k: 112 MiB fitted
    assert drift(rows(leak, np.full(1000, 10)))["v"]["flags"] == ["rss_growth"]


def test_latency_drift_is_end_over_start_of_the_fit():
    latency = 1000 + np.arange(1000) * 2  # fitted 1200 at 100, 2998 at 999
    found = drift(rows(np.full(1000, 1 << 20), latency))["v"]
    assert found["latency_trend"] == pytest.approx(2998 / 1200)
    assert found["flags"] == ["latency_drift"]


def test_one_spike_at_the_end_tilts_the_line_but_flags_nothing():
    """A temporary allocation and a stall in the last iterations (a busy machine): the
    least-squares line tilts, the medians of the first and last thirds do not move."""
    rss, latency = np.full(1000, 100 << 20), np.full(1000, 1000)
    rss[-50:] += 400 << 20
    latency[-50:] *= 10
    found = drift(rows(rss, latency))["v"]
    assert found["rss_growth_bytes"] > 16 << 20 and found["rss_bytes_per_1k_iterations"] > 0
    assert found["latency_trend"] > 1.5 and found["latency_t"] > 5  # the line alone: flagged
    assert found["rss_median_growth_bytes"] == 0 and found["latency_median_ratio"] == 1
    assert found["flags"] == []


def test_a_fit_shorter_than_a_few_seconds_gives_no_rate_per_hour():
    """Ten iterations a millisecond apart say nothing of an hour ("+6 GiB/h" from 0.1 s)."""
    table = rows((100 << 20) + np.arange(100) * 4096, np.full(100, 10))
    table = table.set_column(3, "ts", pa.array(np.arange(100) * 1_000_000).cast(table["ts"].type))
    found = drift(table)["v"]
    assert found["rss_bytes_per_1k_iterations"] > 0 and found["rss_bytes_per_hour"] is None
    assert found["wall_span_s"] < MIN_RATE_SPAN_S


def test_a_leak_is_a_verdict_of_its_own():
    from stress.analysis.summary import verdict

    variant = {
        "status": "done",
        "events": {"harness": 0, "memcheck": 0},
        "deaths_counted": 0,
        "invalid": 0,
        "error": 0,
        "non_finite": 0,
        "views_changed": 0,
        "distinct_outputs": 1,
        "grades": {"mismatch": 0},
        "completed": 100,
        "iterations": 100,
        "drift": {"flags": ["rss_growth"]},
        "onnxruntime_disagrees": False,
    }
    assert verdict(variant) is Verdict.LEAK and Verdict.LEAK.finding
    variant["onnxruntime_disagrees"] = True  # outputs as MNN's reference, which ORT disputes
    assert verdict(variant) is Verdict.ORT_MISMATCH and Verdict.ORT_MISMATCH.finding
    variant["onnxruntime_disagrees"] = False
    variant["drift"]["flags"] = ["latency_drift"]  # slower is no finding by itself
    assert verdict(variant) is Verdict.OK
    variant["grades"]["mismatch"] = 1  # a wrong output comes first
    variant["drift"]["flags"] = ["rss_growth"]
    assert verdict(variant) is Verdict.MISMATCH


def test_too_few_iterations_give_no_slope_and_workers_are_fitted_apart():
    assert drift(rows(np.arange(30), np.ones(30))) == {}
    # two workers, each starting afresh: pooled naively, the line would be far flatter
    found = drift(rows(np.arange(500) * 1000, np.ones(500), workers=2))["v"]
    assert found["rss_bytes_per_1k_iterations"] == pytest.approx(1_000_000)


def test_a_latency_trend_lost_in_noise_is_not_flagged():
    """The fitted end is over twice the start, but the iterations scatter far more than the
    line moves: the slope is not significant, so no flag (a short variant's noise)."""
    x = np.arange(200)
    latency = 100 + 10 * x + np.where(x % 2, 4000, 0)
    found = drift(rows(np.full(200, 1 << 20), latency))["v"]
    assert found["latency_trend"] >= 1.5 and found["latency_t"] < 5
    assert found["flags"] == []


@pytest.mark.integration
def test_an_html_path_that_cannot_be_written_is_a_clear_error(scenario_file, tmp_path):
    _, out = reported(scenario_file, tmp_path, iterations=3)
    done = run_cli("report", str(out), "--html", str(tmp_path / "no" / "such.html"), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--html: cannot write the HTML report" in done.stderr and "fix:" in done.stderr


@pytest.mark.integration
def test_names_that_look_like_markup_are_printed_as_they_are(tmp_path):
    """An ONNX output named ``y[/]`` (rich reads ``[/]`` as a closing tag): run, summary,
    report and report --html all exited 70 on it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y[/]"])],
        "markup",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y[/]", TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "m.onnx"
    )
    (tmp_path / "s.yaml").write_text("name: markup\nmodel: m.onnx\niterations: 5\n")
    out = tmp_path / "run"
    run_cli("run", str(tmp_path / "s.yaml"), "--out", str(out), fault="perturb@2+")
    assert "y[/]" in run_cli("summary", str(out)).stdout
    report = run_cli("report", str(out), "--html", str(tmp_path / "r.html"), check=False)
    assert report.returncode == 1, report.stderr  # the mismatch, not our bug (70)
    assert "output 'y[/]'" in report.stdout
