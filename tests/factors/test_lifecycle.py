"""Lifecycle, inputs written once, chaos perturbation and MNN's knobs, really applied in real
workers on real MNN (proved by the test-only trace of ``stress.worker.trace``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import read_events, read_iterations, read_traces, run_cli

pytestmark = pytest.mark.integration


def run_traced(scenario_file, tmp_path: Path, matrix: dict, iterations: int = 20):
    text = f"name: life\nmodel: tiny\niterations: {iterations}\nmatrix:\n"
    text += "".join(f"  {key}: [{value}]\n" for key, value in {"api": "session", **matrix}.items())
    out, trace = tmp_path / "run", tmp_path / "trace"
    run_cli("run", str(scenario_file(text)), "--out", str(out), trace=trace)
    (report,) = read_traces(trace)
    return read_iterations(out), report


@pytest.mark.parametrize(
    "api, lifecycle, created",
    [
        ("session", "reuse", {"interpreters": 1, "sessions": 1}),
        ("session", "session_per_iteration", {"interpreters": 1, "sessions": 21}),
        ("session", "interpreter_per_iteration", {"interpreters": 21, "sessions": 21}),
        ("module", "reuse", {"modules": 1}),
        ("module", "module_per_iteration", {"modules": 21}),
    ],
)
def test_lifecycle_builds_new_objects_every_iteration(
    scenario_file, tmp_path, api, lifecycle, created
):
    rows, trace = run_traced(scenario_file, tmp_path, {"api": api, "lifecycle": lifecycle})
    facts = trace["facts"]["0"]
    assert {key: facts[key] for key in created} == created
    assert trace["calls"]["0"]["begin"] == 20  # each iteration began (renewing, if it does)
    assert (rows.status == "ok").all() and rows.digest.nunique() == 1
    assert (rows.lifecycle == lifecycle).all()


@pytest.mark.parametrize("api", ["session", "module"])
def test_inputs_written_once_are_handed_over_once(scenario_file, tmp_path, api):
    rows, trace = run_traced(scenario_file, tmp_path, {"api": api, "inputs_written": "once"})
    calls = trace["calls"]["0"]
    assert calls["feed"] == 1 and calls["run"] == 20
    assert len(rows) == 20 and (rows.inputs_written == "once").all()


def test_chaos_switches_threads_often_and_pauses_between_calls(scenario_file, tmp_path):
    rows, trace = run_traced(scenario_file, tmp_path, {"perturb": "chaos"}, iterations=50)
    assert trace["switch_interval"] == pytest.approx(1e-6)
    # Four stages per iteration, three in four of them pause: far from none, far from all.
    assert 50 < trace["facts"]["0"]["chaos_pauses"] < 200
    assert (rows.perturb == "chaos").all() and rows.digest.nunique() == 1


def test_without_chaos_the_interpreter_keeps_its_switch_interval(scenario_file, tmp_path):
    _, trace = run_traced(scenario_file, tmp_path, {})
    assert trace["switch_interval"] == pytest.approx(0.005)
    assert "chaos_pauses" not in trace["facts"]["0"]


def test_mnn_modes_reach_the_rows_and_run(scenario_file, tmp_path):
    matrix = {"memory_mode": "low", "power_mode": "high", "precision": "low"}
    rows, _ = run_traced(scenario_file, tmp_path, matrix)
    assert (rows.status == "ok").all()
    assert set(zip(rows.memory_mode, rows.power_mode, rows.precision)) == {("low", "high", "low")}


def test_a_worker_growing_past_max_rss_is_killed_as_a_memory_death(scenario_file, tmp_path):
    """A new session every iteration and no releaseSession: RSS grows ~28 KB per iteration
    (MNN 3.6.1, tiny model). The coordinator kills the worker past max_rss_mib, records a
    'memory' death, and quarantines the variant when it keeps happening."""
    text = """
        name: leak
        model: tiny
        iterations: 1000000
        max_rss_mib: 64
        max_crashes: 1
        matrix:
          lifecycle: [session_per_iteration]
    """
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(text)), "--out", str(out), check=False)
    events = read_events(out)
    memory = events[events.kind == "memory"]
    assert len(memory) == 2 and set(memory.signal) == {"SIGKILL"}
    assert list(events.kind)[-1] == "quarantine"
    rows = read_iterations(out)
    assert rows.rss_bytes.max() > 64 << 20 > rows.rss_bytes.min()
    # Killed soon after passing the limit (RSS is sampled every 0.2 s, ~40 MB of growth).
    assert rows.rss_bytes.max() < 160 << 20
