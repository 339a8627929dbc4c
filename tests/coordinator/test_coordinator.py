"""Real workers, real MNN, real signals: the run survives every kind of worker death and
keeps every iteration completed before it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from stress.coordinator.plan import Budget, plan
from stress.scenario import load_scenario
from tests.conftest import (
    dies_within,
    first_worker,
    read_events,
    read_iterations,
    run_cli,
    start_run,
    wait_for_iterations,
    workers_of,
)

pytestmark = pytest.mark.integration

SCENARIO = """
    name: faults
    model: tiny
    iterations: {iterations}
    timeout: {timeout}
    max_crashes: {max_crashes}
"""


def run_with_fault(
    scenario_file,
    tmp_path: Path,
    fault: str,
    iterations: int = 40,
    timeout: str = "20s",
    max_crashes: int = 3,
    check: bool = True,
    matrix: str = "",
    reference: bool = False,
):
    """Run the faults scenario with one worker at a time. Without ``reference``, no clean
    reference pass (one worker start less): what these tests check (rows, events, counts,
    statuses and the verdicts CRASHED, FAILED, INCONSISTENT) does not depend on it."""
    path = scenario_file(
        SCENARIO.format(iterations=iterations, timeout=timeout, max_crashes=max_crashes) + matrix
    )
    out = tmp_path / "run"
    args = ["--workers", "1"] + ([] if reference else ["--no-reference"])
    done = run_cli("run", str(path), "--out", str(out), *args, fault=fault, check=check)
    return out, done


@pytest.mark.parametrize(
    "kind, event_kind, signal_name",
    [
        ("segv", "crash", "SIGSEGV"),
        ("abort", "crash", "SIGABRT"),
        ("exit", "exit", None),
        ("corrupt", "protocol", "SIGKILL"),
    ],
)
def test_worker_death_is_recorded_and_the_variant_continues(
    scenario_file, tmp_path, kind, event_kind, signal_name
):
    out, done = run_with_fault(scenario_file, tmp_path, f"{kind}@17")
    rows = read_iterations(out)
    # Everything before the death is there, the in-flight iteration is the only gap, and a
    # replacement worker finished the variant.
    assert sorted(rows.iteration) == [i for i in range(40) if i != 17]
    assert rows.worker_id.nunique() == 2
    events = read_events(out)
    assert list(events.kind) == [event_kind]
    event = events.iloc[0]
    assert event.iteration == 17
    assert (None if pd.isna(event.signal) else event.signal) == signal_name
    if kind in ("segv", "abort"):
        assert "Fatal Python error" in event.stack and "stress/worker/main.py" in event.stack
    if kind == "exit":
        assert event.exit_code == 7
    if kind == "corrupt":
        assert "unreadable record" in event.message
    manifest = json.loads((out / "manifest.json").read_text())
    variant = next(iter(manifest["variants"].values()))
    assert variant["status"] == "done" and variant["crashes"] == 1
    assert "CRASHED" in done.stdout


def test_harness_bug_is_not_blamed_on_mnn(scenario_file, tmp_path):
    """An exception in our own code: a 'harness' event, no crash counted, no replacement,
    the variant failed, and the run exits 70 (a bug of ours) saying so."""
    out, done = run_with_fault(scenario_file, tmp_path, "raise@17", check=False)
    assert done.returncode == 70
    assert "harness bug" in done.stderr and "HARNESS_ERROR" in done.stdout
    events = read_events(out)
    assert list(events.kind) == ["harness"]
    assert "InjectedFault: injected test fault" in events.message[0]
    assert "Traceback" in events["stack"][0]
    assert sorted(read_iterations(out).iteration) == list(range(17))
    variant = next(iter(json.loads((out / "manifest.json").read_text())["variants"].values()))
    assert (variant["status"], variant["crashes"]) == ("failed", 0)
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    assert summary["status"] == "failed" and summary["variants"][0]["error"] == 0


def test_mnn_raising_while_loading_is_an_exception_death(scenario_file, tmp_path):
    out, done = run_with_fault(scenario_file, tmp_path, "load_error@0", max_crashes=1, check=False)
    events = read_events(out)
    assert list(events.sort_values("ts").kind) == ["exception", "exception", "quarantine"]
    assert events.message.str.contains("SystemError").sum() == 2
    assert done.returncode == 3 and "no iteration completed" in done.stderr


def test_wrong_outputs_are_detected_and_counted(scenario_file, tmp_path):
    """Outputs altered after MNN produced them: each kind lands in its own count."""
    out, done = run_with_fault(
        scenario_file,
        tmp_path,
        "nan@3,rc@5,mnn_raise@7",
        iterations=12,
        matrix="    matrix:\n      api: [session, module]\n",
        reference=True,  # the table's exact/close columns grade against it
    )
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    for variant in summary["variants"]:
        counts = {k: variant[k] for k in ("iterations", "ok", "invalid", "error", "non_finite")}
        assert counts == {"iterations": 12, "ok": 10, "invalid": 1, "error": 1, "non_finite": 1}
        assert variant["distinct_outputs"] == 2  # the NaN output differs from the others
    assert done.stdout.split("exact/close")[0].count("FAILED") == 2  # rows of the table
    rows = read_iterations(out).set_index(["api", "iteration"])
    for api in ("session", "module"):
        assert rows.loc[(api, 3)].nan_count == 1
        assert (rows.loc[(api, 5)].status, rows.loc[(api, 5)].rc) == ("invalid", 7)
        failed = rows.loc[(api, 7)]
        assert failed.status == "error" and "numpy type does not match" in failed.error
        assert pd.isna(failed.output_name)
    # resident memory is sampled for real: MNN and numpy alone take more than 5 MB
    assert (read_iterations(out).rss_bytes > 5 << 20).all()


def test_perturbed_output_is_inconsistent(scenario_file, tmp_path):
    out, done = run_with_fault(scenario_file, tmp_path, "perturb@4", iterations=10)
    (variant,) = json.loads(run_cli("summary", str(out), "--json").stdout)["variants"]
    assert (variant["ok"], variant["distinct_outputs"], variant["non_finite"]) == (10, 2, 0)
    assert "INCONSISTENT" in done.stdout


def test_hung_worker_is_killed_with_its_stack(scenario_file, tmp_path):
    out, _ = run_with_fault(scenario_file, tmp_path, "hang@5", iterations=12, timeout="1s")
    events = read_events(out)
    assert list(events.kind) == ["hang"]
    assert events.signal[0] == "SIGKILL"
    assert "faults.py" in events["stack"][0]  # faulthandler's dump, asked for before the kill
    assert sorted(read_iterations(out).iteration) == [i for i in range(12) if i != 5]


def test_crash_loop_is_quarantined_and_the_run_goes_on(scenario_file, tmp_path):
    path = scenario_file(
        SCENARIO.format(iterations=30, timeout="20s", max_crashes=1)
        + "    matrix:\n      num_thread: [1, 2]\n"
    )
    out = tmp_path / "run"
    # max_crashes 1: the replacement crashes again, which makes the loop (two workers per
    # variant, not three)
    args = ("--workers", "2", "--no-reference")
    run_cli("run", str(path), "--out", str(out), *args, fault="segv@10+")
    events = read_events(out)
    manifest = json.loads((out / "manifest.json").read_text())
    for variant_id, entry in manifest["variants"].items():
        kinds = list(events[events.variant_id == variant_id].sort_values("ts").kind)
        assert kinds == ["crash", "crash", "quarantine"]
        assert entry["status"] == "quarantined"
    rows = read_iterations(out)
    assert (
        rows.groupby("variant_id").iteration.apply(sorted).map(list).tolist()
        == [list(range(10))] * 2
    )


def test_external_sigkill_mid_run_loses_only_the_iteration_in_flight(scenario_file, tmp_path):
    path = scenario_file("name: kill\nmodel: tiny\nduration: 3s\n")
    out = tmp_path / "run"
    coordinator = start_run(path, out, "--workers", "1", "--no-reference")
    victim = first_worker(coordinator.pid)
    wait_for_iterations(out, 100)  # well inside the iteration loop
    victim.send_signal(signal.SIGKILL)
    stdout, stderr = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 0, stderr
    event = read_events(out).iloc[0]
    assert (event.kind, event.signal, event.pid) == ("crash", "SIGKILL", victim.pid)
    rows = read_iterations(out)
    before = rows[rows.pid == victim.pid].iteration
    assert len(before) > 100
    # Contiguous from 0 up to the death: nothing lost but the iteration in flight ...
    assert sorted(before) == list(range(len(before)))
    assert event.iteration == len(before)
    # ... and the replacement carried on right after it until the variant's time was up.
    after = sorted(rows[rows.pid != victim.pid].iteration)
    assert after == list(range(len(before) + 1, len(before) + 1 + len(after)))
    assert len(after) > 100


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_coordinator_keeps_a_readable_run(scenario_file, tmp_path, signum):
    path = scenario_file(
        SCENARIO.format(iterations=10**7, timeout="20s", max_crashes=3)
        + "    matrix:\n      api: [session, module]\n      num_thread: [1, 2]\n"
    )
    out = tmp_path / "run"
    coordinator = start_run(path, out, "--workers", "2", "--no-reference")
    wait_for_iterations(out, 100)
    coordinator.send_signal(signum)
    stdout, stderr = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 130, stderr
    assert "interrupted" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["ended"]
    statuses = sorted(v["status"] for v in manifest["variants"].values())
    assert statuses == ["interrupted", "interrupted", "skipped", "skipped"]
    rows = read_iterations(out)
    assert len(rows) > 0
    for _, group in rows.groupby("variant_id"):
        assert sorted(group.iteration) == list(range(len(group)))
    assert read_events(out) is None  # workers stopped cleanly: nobody died
    assert all(dies_within(pid, 1.0) for pid in set(rows.pid))  # no worker left running
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    assert summary["status"] == "interrupted"
    assert sum(v["iterations"] for v in summary["variants"]) == len(rows)


def _save_model(path: Path, build) -> Path:
    """A user model built with MNN.expr in this process (MNN is imported only here)."""
    import MNN.expr as F

    output = build(F)
    F.save([output], str(path))
    return path


def test_dynamic_input_shapes_are_resized_in_both_apis(scenario_file, tmp_path):
    def shifted(F):
        signal_in = F.placeholder([1, -1], F.NCHW, F.float)
        signal_in.name = "signal"
        out = F.relu(signal_in * F.scalar(2.0) + F.scalar(1.0))
        out.name = "shifted"
        return out

    _save_model(tmp_path / "dynamic.mnn", shifted)
    path = scenario_file("""
        name: dynamic
        model: dynamic.mnn
        iterations: 5
        inputs:
          signal: {shape: [1, 1000], distribution: ones}
        matrix:
          api: [session, module]
    """)
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference")
    rows = read_iterations(out)
    assert len(rows) == 10 and set(rows.status) == {"ok"}
    assert {tuple(s) for s in rows["shape"]} == {(1, 1000)}
    assert set(rows["min"]) == set(rows["max"]) == {3.0}  # ones * 2 + 1, every element


def test_record_too_large_for_the_ring_grows_it_without_losing_an_iteration(
    scenario_file, tmp_path
):
    def outer(F):
        x = F.placeholder([1, -1], F.NCHW, F.float)
        x.name = "x"
        out = F.matmul(F.reshape(x, [-1, 1]), x)
        out.name = "outer"
        return out

    _save_model(tmp_path / "outer.mnn", outer)
    path = scenario_file("""
        name: outer
        model: outer.mnn
        iterations: 3
        inputs:
          x: {shape: [1, 1500]}
    """)
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference")
    events = read_events(out)
    assert list(events.kind) == ["resize"]  # the 9 MB output did not fit the 16 MiB ring's half
    rows = read_iterations(out)
    assert sorted(rows.iteration) == [0, 1, 2]  # the iteration that did not fit ran again
    assert {tuple(s) for s in rows["shape"]} == {(1500, 1500)}
    variant = next(iter(json.loads((out / "manifest.json").read_text())["variants"].values()))
    assert (variant["status"], variant["crashes"]) == ("done", 0)


def test_workers_die_with_a_sigkilled_coordinator(scenario_file, tmp_path):
    # deep: small records at milliseconds per run, so the ring never fills and the worker
    # cannot notice its parent's death by itself within the test.
    path = scenario_file("name: orphan\nmodel: deep\nduration: 60s\n")
    out = tmp_path / "run"
    coordinator = start_run(path, out, "--workers", "1", "--no-reference")
    worker = first_worker(coordinator.pid)
    wait_for_iterations(out, 1)
    coordinator.kill()
    coordinator.wait()
    dead = dies_within(worker.pid, 2.0)  # PR_SET_PDEATHSIG: no orphan burns CPU
    if not dead:
        worker.kill()
    assert dead
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"  # what it was doing when it died, still readable
    # ... and a reader sees that its coordinator is gone: killed, not running, never "ok".
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    assert summary["status"] == "killed" and str(coordinator.pid) in summary["reason"]
    assert [(v["status"], v["verdict"]) for v in summary["variants"]] == [("killed", "KILLED")]
    assert "run killed: the coordinator" in run_cli("summary", str(out)).stdout


def test_worker_stopped_from_outside_hands_over_without_a_gap(scenario_file, tmp_path):
    path = scenario_file("name: handover\nmodel: tiny\nduration: 3s\n")
    out = tmp_path / "run"
    coordinator = start_run(path, out, "--workers", "1", "--no-reference")
    first = first_worker(coordinator.pid)
    wait_for_iterations(out, 100)
    first.send_signal(signal.SIGTERM)  # someone else's kill, not the coordinator's stop
    _, stderr = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, stderr
    events = read_events(out)
    assert list(events.kind) == ["interrupted"] and events.pid[0] == first.pid
    # It said it was done: no iteration was in flight.
    assert pd.isna(events.iteration[0]) and pd.isna(list(events.in_flight[0])).all()
    rows = read_iterations(out)
    assert rows.pid.nunique() == 2
    assert sorted(rows.iteration) == list(range(len(rows)))  # finished its iteration: no gap
    variant = next(iter(json.loads((out / "manifest.json").read_text())["variants"].values()))
    assert (variant["status"], variant["crashes"]) == ("done", 0)


def test_a_coordinator_bug_is_not_blamed_on_the_worker(scenario_file, tmp_path, monkeypatch):
    """Only decoding is guarded: a failure while buffering rows is the coordinator's own bug.
    The run fails saying so (exit 70 in the CLI), keeps the rows buffered before the bug, no
    worker is killed as 'protocol', and none outlives the run."""
    from stress.coordinator.runner import execute
    from stress.records.row_buffer import IterationBuffer
    from stress.records.states import RunStatus

    real_add, real_add_batch = IterationBuffer.add, IterationBuffer.add_batch
    buffered: list[int] = []  # iterations handed to the buffer before the bug

    def bug() -> None:
        if len(buffered) >= 30:
            raise RuntimeError("a bug in the coordinator")

    def broken_add(self, context, record):
        bug()
        buffered.append(record.iteration)
        real_add(self, context, record)

    def broken_add_batch(self, context, batch):
        bug()
        buffered.extend(batch.head["iteration"].tolist())
        real_add_batch(self, context, batch)

    monkeypatch.setattr(IterationBuffer, "add", broken_add)
    monkeypatch.setattr(IterationBuffer, "add_batch", broken_add_batch)
    path = scenario_file("name: bug\nmodel: tiny\niterations: 100000\n")
    out = tmp_path / "run"
    result = execute([path], out, 1, Budget(), reference=False)  # counts only the variant's
    assert result.status is RunStatus.FAILED and "coordinator failed" in result.reason
    assert "RuntimeError: a bug in the coordinator" in result.reason
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert read_events(out) is None  # no protocol (or any other) event
    assert len(buffered) >= 30
    assert sorted(read_iterations(out).iteration) == list(range(len(buffered)))
    assert not workers_of(os.getpid())


def test_a_late_signal_does_not_turn_a_finished_run_into_an_interrupted_one(scenario_file):
    from stress.coordinator.runner import outcome
    from stress.records.states import RunStatus, VariantStatus

    states = plan([load_scenario(scenario_file("name: late\nmodel: tiny\n"))], Budget(), 1)
    states[0].status, states[0].completed = VariantStatus.DONE, 100
    assert outcome(states, None, 0)[:2] == (RunStatus.COMPLETE, None)
    states[0].status = VariantStatus.INTERRUPTED
    assert outcome(states, None, 0)[0] is RunStatus.INTERRUPTED
    states[0].status, states[0].completed = VariantStatus.DONE, 0
    status, reason, _ = outcome(states, None, 0)
    assert status is RunStatus.FAILED and "no iteration completed" in reason
