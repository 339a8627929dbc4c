"""The overnight soak: a run stopped (SIGTERM) or killed (SIGKILL of the coordinator) goes on
with ``run --resume`` without a gap or a duplicate per (variant, thread)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from stress.analysis.dataset import iterations_table
from stress.coordinator.plan import Budget, plan
from stress.coordinator.resume import Recorded, _lost, _rerun, carry_over
from stress.models.resolve import resolve_model
from stress.records.manifest import VariantEntry
from stress.records.rundir import RunDir
from stress.records.states import VariantStatus
from stress.scenario import load_scenario
from tests.conftest import dies_within, run_cli, start_run, wait_for_iterations, workers_of

SCENARIO = """
name: resumable
model: tiny
seed: 0
timeout: 10s
matrix:
  api: [session, module]
  threads: [1, 2]
"""


def iteration_rows(out: Path) -> dict[tuple[str, int], list[int]]:
    """Per (variant, thread), the iteration numbers of its rows, sorted."""
    table = iterations_table(out, columns=["variant_id", "thread", "iteration", "observation"])
    rows: dict[tuple[str, int], list[int]] = {}
    for row in table.to_pylist():
        assert row["observation"] == "fetch"
        rows.setdefault((row["variant_id"], row["thread"]), []).append(row["iteration"])
    return {key: sorted(found) for key, found in rows.items()}


def assert_gapless(rows: dict[tuple[str, int], list[int]]) -> None:
    for key, found in rows.items():
        assert found == list(range(len(found))), f"{key}: a gap or a duplicate"


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def logs_of(out: Path, variant_id: str) -> set[str]:
    return {p.name for p in (out / "logs").glob(f"{variant_id}-w*.log")}


def journal_lines(out: Path) -> list[dict]:
    lines = []
    for raw in (out / "journal.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def wait_for_a_done_variant(out: Path, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = out / "journal.jsonl"
        for line in journal_lines(out) if path.exists() else []:
            if line.get("status") == "done":
                return line["variant"]
        time.sleep(0.05)
    raise AssertionError("no variant finished")


def test_sigterm_then_resume_goes_on_without_gaps_or_duplicates(scenario_file, tmp_path):
    path, out = scenario_file(SCENARIO), tmp_path / "run"
    # 3 s of loop time per variant (the run's 12 s shared by 4, one at a time): the next
    # variant, 1.5 s into its loop at most when stopped, is left unfinished
    run = start_run(path, out, "--duration", "12s", "--workers", "1", "--no-adaptive")
    finished = wait_for_a_done_variant(out)
    time.sleep(1.5)  # into the next variant
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130
    first = manifest(out)
    assert first["status"] == "interrupted"
    stopped = {vid for vid, v in first["variants"].items() if v["status"] != "done"}
    assert finished not in stopped and stopped
    assert_gapless(iteration_rows(out))
    logs_before = logs_of(out, finished)

    done = run_cli("run", "--resume", str(out), timeout=120)
    assert "resuming 3 unfinished of 4 variants" in done.stderr  # one line, never wrapped
    assert "resuming 3 unfinished of 4 variants" in (out / "run.log").read_text()
    final = manifest(out)
    assert final["run_id"] == first["run_id"] and final["status"] == "complete"
    assert [s["status"] for s in final["segments"]] == ["interrupted", "complete"]
    assert all(v["status"] == "done" for v in final["variants"].values())
    assert logs_of(out, finished) == logs_before  # a finished variant is not run again
    rows = iteration_rows(out)
    assert_gapless(rows)
    for variant_id, entry in final["variants"].items():
        threads = [rows.get((variant_id, t), []) for t in range(len(entry["next_iterations"]))]
        assert [len(t) for t in threads] == entry["next_iterations"]
        assert sum(entry["next_iterations"]) == entry["completed"] > 0
        assert entry["used_s"] == pytest.approx(entry["duration_s"], abs=1.0)  # its time, once
    assert "run --resume" not in " ".join(first["command"])
    assert final["segments"][1]["command"][-2:] == ["--resume", str(out)]


def test_coordinator_sigkill_loses_about_a_second_and_resume_runs_it_again(scenario_file, tmp_path):
    path, out = scenario_file(SCENARIO), tmp_path / "run"
    # 6 s of loop time per variant (12 s x 2 workers / 4): 10,000 iterations of the tiny model
    # take 1-3 s, so the kill lands mid-variant, with the second pair still to run
    run = start_run(path, out, "--duration", "12s", "--workers", "2")
    wait_for_iterations(out, at_least=10_000)
    workers = workers_of(run.pid)
    time.sleep(1.3)  # some way into a flush interval
    killed_at = time.time()
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    assert workers and all(dies_within(w.pid, 10) for w in workers)  # none outlives it

    table = iterations_table(out, columns=["variant_id", "ts"])
    last = table.group_by("variant_id").aggregate([("ts", "max")]).to_pylist()
    assert last
    for row in last:  # rows become durable within about a second of their iteration (0.3-0.4 s
        # quiet; 2.02 s seen in CI beside the big-output tests)
        assert killed_at - row["ts_max"].timestamp() < 3.0, row
    assert_gapless(iteration_rows(out))
    summary = run_cli("summary", str(out))
    assert "killed" in summary.stdout

    done = run_cli("run", "--resume", str(out), timeout=120)
    final = manifest(out)
    assert [s["status"] for s in final["segments"]] == ["killed", "complete"]
    rerun = final["segments"][1]["iterations_rerun"]
    span = pc.max(table["ts"]).as_py() - pc.min(table["ts"]).as_py()
    rate = table.num_rows / span.total_seconds()  # rows per second, all variants together
    assert rerun <= 2.0 * rate  # about a second's worth (the journal may lag the rows too)
    if rerun:
        assert f"{rerun} iterations the previous coordinator had seen" in done.stderr
    assert_gapless(iteration_rows(out))
    assert final["status"] == "complete"


def test_resume_refuses_a_complete_run_one_in_use_and_mixed_arguments(scenario_file, tmp_path):
    path, out = scenario_file(SCENARIO.replace("[1, 2]", "[1]").replace(", module", "")), tmp_path
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--iterations", "20", "--no-reference")
    done = run_cli("run", "--resume", str(out), check=False)
    assert done.returncode == 2 and "nothing is left to resume" in done.stderr
    holder = RunDir.reopen(out)
    try:
        busy = run_cli("run", "--resume", str(out), check=False)
    finally:
        holder.close()
    assert busy.returncode == 2 and "in use by another mnn-stress run" in busy.stderr
    mixed = run_cli("run", str(path), "--resume", str(out), check=False)
    assert mixed.returncode == 2 and "give only --resume RUN_DIR" in mixed.stderr
    nothing = run_cli("run", "--resume", str(tmp_path), check=False)
    assert nothing.returncode == 2 and "holds no run" in nothing.stderr


def test_max_disk_stops_storing_values_then_stops_the_run_within_its_budget(
    scenario_file, tmp_path
):
    path = scenario_file(
        "name: disky\nmodel: tiny\nseed: 0\nduration: 120s\ntimeout: 10s\n"
        "record: {max_value_bytes: 65536}\nmatrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    run = start_run(path, out, "--max-disk", "16M", "--no-reference")
    _, stderr = run.communicate(timeout=240)
    assert run.returncode == 130
    info = manifest(out)
    assert info["status"] == "interrupted" and "--max-disk" in info["reason"]
    disk = info["disk"]
    assert disk["budget_bytes"] == 16 << 20
    assert disk["values_stopped_at"] < disk["stopped_at"]
    used = int(
        subprocess.run(["du", "-sb", str(out)], capture_output=True, text=True).stdout.split()[0]
    )
    assert used <= 16 << 20
    table = iterations_table(out, columns=["ts", "values", "digest"])
    stopped_at = pa.scalar(datetime.fromisoformat(disk["values_stopped_at"]), table["ts"].type)
    assert pc.all(pc.is_valid(table["digest"])).as_py()  # digests go on
    kept = pc.is_valid(table["values"])
    assert pc.any(kept).as_py()  # stored at first...
    late = pc.greater(table["ts"], stopped_at)
    assert not pc.any(pc.and_(late, kept)).as_py()  # ...and never after the budget said so
    log = (out / "run.log").read_text()
    assert "output values are no longer stored" in log and "stopping the run" in log
    assert "output values are no longer stored" in stderr


def test_max_disk_below_the_smallest_budget_is_refused(scenario_file, tmp_path):
    done = run_cli("run", str(scenario_file(SCENARIO)), "--max-disk", "1M", check=False)
    assert done.returncode == 2 and "smallest usable budget" in done.stderr
    bad = run_cli("run", str(scenario_file(SCENARIO)), "--max-disk", "lots", check=False)
    assert bad.returncode == 2 and "is not a size" in bad.stderr


def test_resume_refuses_a_model_replaced_since_the_run_began(scenario_file, tmp_path):
    """A swapped model once made 69 % of a resumed run's rows 'mismatch', blamed on MNN."""
    tiny, deep = (Path(resolve_model(name, Path(".")).path) for name in ("tiny", "deep"))
    model = tmp_path / "net.mnn"
    shutil.copy(tiny, model)
    # killed at its first progress line (about 1 s in), with 2 s left for the resume to run
    path, out = scenario_file("name: swapped\nmodel: net.mnn\nduration: 3s\n"), tmp_path / "run"
    run = start_run(path, out, "--workers", "1", "--no-adaptive")
    wait_for_iterations(out, at_least=100)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    recorded = manifest(out)["scenarios"][0]["model_source"]
    assert (recorded["file"], recorded["size"]) == (str(model), tiny.stat().st_size)
    assert recorded["sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()
    before = sorted((out / "logs").iterdir()), manifest(out)["segments"]

    shutil.copy(deep, model)  # rebuilt under the same name
    done = run_cli("run", "--resume", str(out), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert (
        f"{model}: scenario 'swapped': its model is not the one this run began with: its "
        f"content changed: {tiny.stat().st_size:,} bytes" in done.stderr
    )
    assert (sorted((out / "logs").iterdir()), manifest(out)["segments"]) == before  # none ran

    shutil.copy(tiny, model)
    older = manifest(out)
    del older["scenarios"][0]["model_source"]  # as an older mnn-stress wrote it
    (out / "manifest.json").write_text(json.dumps(older))
    done = run_cli("run", "--resume", str(out), timeout=120)
    warning = "recorded no model digests (an older mnn-stress): cannot check that the models"
    assert warning in done.stderr and warning in (out / "run.log").read_text()
    assert manifest(out)["status"] == "complete"


def test_a_model_rewritten_during_the_run_stops_it_before_a_worker_loads_it(
    scenario_file, tmp_path
):
    """Overnight, someone rebuilds the model under the same name: the next worker (here every
    50 iterations) would load it and mix two models' rows under one variant. The run stops,
    exit 3, naming the file; the rows kept are the first model's."""
    tiny, deep = (Path(resolve_model(name, Path(".")).path) for name in ("tiny", "deep"))
    model = tmp_path / "net.mnn"
    shutil.copy(tiny, model)
    text = "name: rebuilt\nmodel: net.mnn\nduration: 60s\nfresh_worker_every: 50\n"
    path, out = scenario_file(text), tmp_path / "run"
    run = start_run(path, out, "--workers", "1", "--no-adaptive")
    wait_for_iterations(out, at_least=100)
    shutil.copy(deep, model)  # written over in place: the same inode
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 3, stderr
    assert f"{model}: the model file was rewritten ({tiny.stat().st_size:,} bytes" in stderr
    assert manifest(out)["status"] == "failed"
    outputs = set(iterations_table(out).column("output_name").to_pylist())
    assert outputs == {"y"}, outputs  # deep's outputs never recorded


def test_how_a_model_file_changed_is_told_apart(tmp_path):
    """What the run's stop says: rewritten in place (even with its mtime put back), replaced
    (a rename over it, the same size), deleted; a ``touch``, or the same bytes written again
    (another run's cache building the same built-in model), is no change."""
    from stress.models.watch import LoadedFile, change

    model = tmp_path / "net.mnn"
    model.write_bytes(b"a" * 10)
    then = LoadedFile.of(model)
    assert change(model, then) is None
    os.utime(model, ns=(1, 1))
    model.write_bytes(b"a" * 10)
    assert change(model, then) is None
    mtime = model.stat().st_mtime_ns
    model.write_bytes(b"b" * 10)
    os.utime(model, ns=(mtime, mtime))
    assert change(model, then) == "was rewritten (10 bytes then, 10 bytes now)"
    model.write_bytes(b"b" * 12)
    assert change(model, then) == "was rewritten (10 bytes then, 12 bytes now)"
    then = LoadedFile.of(model)
    os.link(model, tmp_path / "kept")  # its inode is not freed, so not reused by the next file
    other = tmp_path / "new.mnn"
    other.write_bytes(b"b" * 12)
    os.replace(other, model)
    assert change(model, then) is None  # another inode, the same bytes
    other.write_bytes(b"c" * 12)
    os.replace(other, model)
    assert change(model, then) == "was replaced by another file"
    model.unlink()
    assert change(model, then) == "was deleted or cannot be read any more"


def test_a_converted_model_changes_with_its_converter_and_flags(tmp_path):
    """What --resume compares for an ONNX model: the file, the converter, each value's flags."""
    from stress.models.source import changes, source_now, source_of
    from tests.models.test_models import _onnx_model

    _onnx_model(tmp_path / "net.onnx")
    model = resolve_model("net.onnx", tmp_path)
    recorded = source_of(model, ["{}", "{fp16: true}"])
    assert recorded.conversions == {"{}": [], "{fp16: true}": ["--fp16"]}
    assert changes(recorded, source_now(recorded, tmp_path)) == []
    older = dataclasses.replace(
        recorded, made_by="converter v1, MNN 3.6.0", conversions={"{}": [], "{fp16: true}": []}
    )
    found = changes(older, source_now(older, tmp_path))
    assert found == [
        f"it was made by converter v1, MNN 3.6.0 then, by {recorded.made_by} now",
        "convert {fp16: true} gave the converter [] then, ['--fp16'] now",
    ]
    (tmp_path / "net.onnx").write_bytes(b"another model")
    assert changes(recorded, source_now(recorded, tmp_path))[0].startswith("its content changed")


def test_a_variant_marked_done_goes_on_from_its_rows_on_disk_not_the_manifests_count(
    scenario_file,
):
    """Seen in CI: the coordinator killed just after a variant's first pass was marked done in
    the manifest (28,656 iterations) but before its last 279 rows were written; the resume's
    adaptive second pass went on from 28,656 and left a gap. Numbering goes on from the rows
    on disk; the lost iterations are counted (a done variant is not run again for them)."""
    loaded = load_scenario(scenario_file("name: done\nmodel: tiny\nduration: 6s\n"))
    (state,) = plan([loaded], Budget(duration_s=6.0), concurrency=1)
    entry = VariantEntry(
        scenario="done",
        label=state.variant.label,
        params=state.variant.params,
        status=VariantStatus.DONE,
        completed=28_656,
        crashes=0,
        next_iterations=[28_656],
        stop_iteration=None,
        duration_s=6.0,
        workers_started=1,
        used_s=6.03,
    )
    on_disk = {state.variant.variant_id: Recorded(next_iterations={0: 28_377}, completed=28_377)}
    carry_over([state], {state.variant.variant_id: entry}, on_disk)
    assert state.status is VariantStatus.DONE and state.used_s == 6.03  # not run again...
    assert state.next_iterations == [28_377] and state.completed == 28_377  # ...numbered on
    assert (_lost(state, entry), _rerun(state, entry)) == (279, 0)  # said, not run again
