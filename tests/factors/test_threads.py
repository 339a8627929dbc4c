"""Threads, sharing and the caller's lock, really applied inside real workers on real MNN.

Workers leave a test-only trace (``stress.worker.trace``): a layer next to MNN counts how many
threads were inside each stage at once and the calls made while the caller's lock was free, and each
thread reports the ids of the MNN objects it used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import read_events, read_iterations, read_traces, run_cli

pytestmark = pytest.mark.integration

THREE_INPUT = """
    name: threads
    model: three_input
    iterations: {iterations}
    timeout: {timeout}
    max_crashes: {max_crashes}
    inputs:
      source_img: {{distribution: uniform}}
      ref_img: {{distribution: uniform}}
      audio_feature: {{distribution: normal, scale: 0.5}}
    matrix:
"""


def run_traced(
    scenario_file, tmp_path: Path, matrix: dict, iterations: int = 30, reference=False, **kw
):
    """Run one variant with a trace; returns (rows, traces of the workers that ended well).
    Without ``reference``, no clean reference pass (one worker start less): only a verdict
    (outputs graded against it) depends on it, and only the first test checks one."""
    text = THREE_INPUT.format(
        iterations=iterations, timeout=kw.pop("timeout", "30s"), max_crashes=kw.pop("crashes", 3)
    )
    text += "".join(f"      {key}: [{value}]\n" for key, value in matrix.items())
    out, trace = tmp_path / "run", tmp_path / "trace"
    args = ["--workers", "1"] + ([] if reference else ["--no-reference"])
    done = run_cli("run", str(scenario_file(text)), "--out", str(out), *args, trace=trace, **kw)
    traces = read_traces(trace)
    return out, done, traces


def facts(trace: dict, key: str) -> list:
    return [trace["facts"][str(t)][key] for t in range(len(trace["facts"]))]


def test_threads_run_inside_mnn_at_once_and_record_their_own_rows(scenario_file, tmp_path):
    out, _, (trace,) = run_traced(
        scenario_file, tmp_path, {"threads": 4}, iterations=30, reference=True
    )
    assert trace["peak"]["run"] >= 2  # runSession releases the GIL: threads overlap in it
    assert len(set(facts(trace, "interpreter"))) == 4 and len(set(facts(trace, "session"))) == 4
    rows = read_iterations(out)
    for thread in range(4):  # iterations are numbered per thread, all of them recorded
        assert sorted(rows[rows.thread == thread].iteration.unique()) == list(range(30))
    assert not rows.duplicated(["variant_id", "thread", "iteration", "output_name"]).any()
    assert (rows.threads == 4).all() and (rows.sharing == "own").all()
    assert rows.groupby("output_name").digest.nunique().max() == 1  # same inputs, same outputs
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    (variant,) = summary["variants"]
    assert (variant["iterations"], variant["completed"], variant["verdict"]) == (120, 120, "ok")


def test_an_interpreter_shared_under_the_setup_lock(scenario_file, tmp_path):
    """One Interpreter, a session per thread; the lock is held for every set-up call and
    not for the runs (MNN's documented contract, alibaba/MNN#592)."""
    matrix = {"threads": 3, "sharing": "interpreter", "caller_lock": "setup"}
    _, _, (trace,) = run_traced(scenario_file, tmp_path, matrix, iterations=20)
    assert len(set(facts(trace, "interpreter"))) == 1
    assert len(set(facts(trace, "session"))) == 3
    assert trace["calls"]["0"]["setup"] == 1 and trace["peak"]["setup"] == 1
    assert "setup" not in trace["unlocked"]  # every set-up call ran under the lock
    assert trace["unlocked"]["run"] >= 20  # runs did not take it


def test_one_session_shared_under_a_lock_around_every_call(scenario_file, tmp_path):
    """The serialised control: never two threads inside MNN, never a call without the lock."""
    matrix = {"threads": 3, "sharing": "session", "caller_lock": "all"}
    out, _, (trace,) = run_traced(scenario_file, tmp_path, matrix, iterations=20)
    assert len(set(facts(trace, "session"))) == 1
    assert trace["peak"]["any"] == 1 and trace["unlocked"] == {}
    rows = read_iterations(out)
    assert len(rows[rows.output_name == rows.output_name.iloc[0]]) == 60
    assert rows.groupby("output_name").digest.nunique().max() == 1


@pytest.mark.parametrize(
    "sharing, modules, clones, distinct",
    [("own", 1, 0, 3), ("module", 0, 0, 1), ("clone", 0, 1, 3)],
)
def test_module_sharing(scenario_file, tmp_path, sharing, modules, clones, distinct):
    matrix = {"api": "module", "threads": 3, "sharing": sharing}
    out, _, (trace,) = run_traced(scenario_file, tmp_path, matrix, iterations=10)
    assert len(set(facts(trace, "module"))) == distinct
    assert facts(trace, "modules") == [modules] * 3 and facts(trace, "clones") == [clones] * 3
    assert sorted(read_iterations(out).thread.unique()) == [0, 1, 2]


def test_a_crash_loses_at_most_the_iteration_in_flight_on_each_thread(scenario_file, tmp_path):
    """A segfault in thread 1 at its iteration 12: the event has every thread's iteration in
    flight, only those are missing, and the replacement goes on from there."""
    out, _, _ = run_traced(
        scenario_file, tmp_path, {"threads": 3}, iterations=30, fault="segv@12/1"
    )
    events = read_events(out)
    (crash,) = events[events.kind == "crash"].itertuples()
    assert crash.signal == "SIGSEGV" and crash.threads == 3
    in_flight = list(crash.in_flight)
    assert len(in_flight) == 3 and in_flight[1] == 12
    rows = read_iterations(out)
    assert not rows.duplicated(["thread", "iteration", "output_name"]).any()
    for thread in range(3):
        missing = set(range(30)) - set(rows[rows.thread == thread].iteration)
        assert missing == ({in_flight[thread]} - {None})


def test_a_thread_stuck_in_a_call_is_a_hang_with_every_threads_stack(scenario_file, tmp_path):
    """Thread 1 hangs while threads 0 and 2 keep recording: still a hang, found within the
    timeout, with all stacks dumped; the other threads' rows are kept."""
    out, _, _ = run_traced(
        scenario_file,
        tmp_path,
        {"threads": 3},
        iterations=100000,
        fault="hang@5/1",
        timeout="2s",
        crashes=0,
        check=False,
    )
    events = read_events(out)
    hang = events[events.kind == "hang"].iloc[0]
    assert hang.stack.count("Thread 0x") + hang.stack.count("Current thread 0x") >= 4
    assert list(hang.in_flight)[1] == 5
    rows = read_iterations(out)
    assert rows[rows.thread == 1].iteration.max() == 4
    assert rows[rows.thread == 0].iteration.max() > 5


def test_an_error_in_one_thread_is_a_harness_failure_not_mnns(scenario_file, tmp_path):
    out, done, _ = run_traced(
        scenario_file, tmp_path, {"threads": 2}, iterations=20, fault="raise@3/0", check=False
    )
    assert done.returncode == 70  # a bug of ours, not a run the machine stopped (3)
    events = read_events(out)
    assert list(events.kind) == ["harness"] and "InjectedFault" in events.message.iloc[0]


def test_mnn_errors_in_threads_are_rows(scenario_file, tmp_path):
    out, _, _ = run_traced(
        scenario_file, tmp_path, {"threads": 2}, iterations=10, fault="mnn_raise@4/1,rc@6"
    )
    rows = read_iterations(out)
    errors = rows[rows.status == "error"]
    assert list(zip(errors.thread, errors.iteration)) == [(1, 4)]
    assert errors.error.str.contains("numpy type does not match").all()
    invalid = rows[rows.status == "invalid"].drop_duplicates(["thread", "iteration"])
    assert sorted(zip(invalid.thread, invalid.iteration)) == [(0, 6), (1, 6)]
    assert read_events(out) is None  # no worker died


def test_threads_that_finished_are_not_in_flight_when_another_hangs(scenario_file, tmp_path):
    """Threads 0 and 2 run their 20 iterations while thread 1 hangs at its 5th: the event
    says only thread 1 was in an iteration, and a restart would not skip past their ends."""
    out, _, _ = run_traced(
        scenario_file,
        tmp_path,
        {"threads": 3},
        iterations=20,
        fault="hang@5/1",
        timeout="2s",
        crashes=0,
        check=False,
    )
    hang = read_events(out).query("kind == 'hang'").iloc[0]
    assert [None if pd.isna(i) else int(i) for i in hang.in_flight] == [None, 5, None]
    assert hang.iteration == 5
    rows = read_iterations(out)
    assert rows.groupby("thread").iteration.max().to_dict() == {0: 19, 1: 4, 2: 19}


def test_many_threads_switching_every_microsecond_share_the_ring_safely(scenario_file, tmp_path):
    """Eight threads, a thread switch every microsecond (chaos): records are reserved and
    published under the ring's lock, so none is torn, lost or unreadable."""
    text = "name: ring\nmodel: tiny\niterations: 400\nmatrix:\n  threads: [8]\n  perturb: [chaos]\n"
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(text)), "--out", str(out), "--no-reference")
    assert read_events(out) is None  # no protocol error, no death
    rows = read_iterations(out)
    assert len(rows) == 8 * 400 and not rows.duplicated(["thread", "iteration"]).any()
    assert rows.digest.nunique() == 1
