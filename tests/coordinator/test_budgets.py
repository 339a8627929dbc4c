"""Scheduling budgets: the --duration share, the scenario's workers cap, and time summed over
a variant's restarts."""

from __future__ import annotations

import pytest

from stress.coordinator.plan import Budget, overridden_budgets, plan
from stress.errors import StressError
from stress.scenario import load_scenario
from tests.conftest import read_iterations, run_cli


def scenario(scenario_file, name: str, extra: str = ""):
    text = f"name: {name}\nmodel: tiny\niterations: 10\n{extra}"
    return load_scenario(scenario_file(text, f"{name}.yaml"))


def test_duration_is_shared_by_the_parallelism_the_caps_allow(scenario_file):
    capped = scenario(scenario_file, "capped", "workers: 1\nmatrix:\n  num_thread: [1, 2, 3]\n")
    single = scenario(scenario_file, "single")
    states = plan([capped, single], Budget(duration_s=10.0), concurrency=4)
    # 4 variants; at most 1 of 'capped' and 1 of 'single' at once: 2 in parallel, 5 s each.
    assert [s.duration_s for s in states] == [5.0] * 4
    assert all(s.stop_iteration is None for s in states)
    uncapped = scenario(scenario_file, "free", "matrix:\n  num_thread: [1, 2, 3]\n")
    assert {s.duration_s for s in plan([uncapped, single], Budget(duration_s=10.0), 4)} == {10.0}


def test_a_command_line_budget_says_which_scenario_budgets_it_replaces(scenario_file):
    """``--duration`` (the whole run) and ``duration:`` (a variant) share a word: replacing
    the second with the first is said, naming each scenario that gave its own."""
    counted = scenario(scenario_file, "counted")
    timed = load_scenario(scenario_file("name: timed\nmodel: tiny\nduration: 30s\n", "t.yaml"))
    bare = load_scenario(scenario_file("name: bare\nmodel: tiny\n", "bare.yaml"))
    said = overridden_budgets([counted, timed, bare], Budget(duration_s=90.0))
    assert said == (
        "--duration 90s (the whole run, shared by its variants) replaces the budgets the "
        "scenarios give: counted (iterations: 10), timed (duration: 30s per variant)"
    )
    assert "--iterations 5 (per variant) replaces" in overridden_budgets([timed], Budget(5))
    assert overridden_budgets([bare], Budget(duration_s=90.0)) is None  # its default only
    assert overridden_budgets([counted, timed], Budget()) is None


def test_iterations_override_the_scenarios_budget(scenario_file):
    timed = load_scenario(scenario_file("name: timed\nmodel: tiny\nduration: 5s\n"))
    (state,) = plan([timed], Budget(iterations=7), concurrency=2)
    assert (state.stop_iteration, state.duration_s) == (7, None)
    (state,) = plan([timed], Budget(), concurrency=2)
    assert (state.stop_iteration, state.duration_s) == (None, 5.0)


@pytest.mark.integration
def test_scenario_workers_cap_runs_its_variants_one_at_a_time(scenario_file, tmp_path):
    path = scenario_file(
        "name: capped\nmodel: tiny\niterations: 3000\nworkers: 1\nmatrix:\n  num_thread: [1, 2]\n"
    )
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--workers", "2")
    spans = read_iterations(out).groupby("variant_id").ts.agg(["min", "max"]).sort_values("min")
    assert len(spans) == 2
    assert spans["max"].iloc[0] < spans["min"].iloc[1]  # the second began after the first


@pytest.mark.integration
def test_duration_counts_the_time_of_every_worker_of_a_variant(scenario_file, tmp_path):
    """Two crashes 20 iterations apart (0.1-0.6 s each on the deep model, slower on a busy
    machine: 60 apart, the second crash did not come within 4 s there): the third worker
    gets only what is left of the 4 s, so the loops add up to 4 s, not 4 s + a segment."""
    path = scenario_file("name: restarts\nmodel: deep\nduration: 4s\nmax_crashes: 5\n")
    out = tmp_path / "run"
    run_cli(
        "run",
        str(path),
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-adaptive",
        fault="segv@20,segv@40",
    )
    rows = read_iterations(out)
    assert rows.worker_id.nunique() == 3
    spans = rows.groupby("worker_id").ts.agg(["min", "max"])
    loop_time = (spans["max"] - spans["min"]).dt.total_seconds().sum()
    assert 3.6 < loop_time < 4.3, loop_time


def test_a_variant_is_exhausted_exactly_at_its_budget(scenario_file):
    (state,) = plan([scenario(scenario_file, "edge")], Budget(iterations=5), concurrency=1)
    state.next_iterations = [4]
    assert not state.exhausted()
    state.next_iterations = [5]
    assert state.exhausted()
    state.next_iterations = [5, 4, 5]  # budgets are per thread: one thread still has one to go
    assert not state.exhausted()
    state.next_iterations = [5, 5, 5]
    assert state.exhausted()
    (timed,) = plan([scenario(scenario_file, "timed")], Budget(duration_s=2.0), concurrency=1)
    timed.used_s = 1.5
    assert timed.remaining_s() == 0.5 and not timed.exhausted()
    timed.used_s = 1.995  # within 10 ms of the end: not worth a new worker
    assert timed.exhausted()
    timed.used_s = 1.98
    assert not timed.exhausted()


def test_a_duration_giving_each_variant_exactly_the_minimum_is_accepted(scenario_file):
    four = scenario(scenario_file, "four", "matrix:\n  num_thread: [1, 2, 3, 4]\n")
    states = plan([four], Budget(duration_s=2.0), concurrency=2)
    assert [s.duration_s for s in states] == [1.0] * 4
    with pytest.raises(StressError) as caught:
        plan([four], Budget(duration_s=1.9), concurrency=2)
    assert caught.value.key == "--duration" and "--duration 2s or more" in caught.value.message
    assert "950 ms" in caught.value.message
