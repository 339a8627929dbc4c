"""Models with big outputs (16 to 256 MiB an iteration), as users bring them: recorded whole,
the coordinator's memory bounded, SIGTERM obeyed, and a record no ring can hold refused."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from stress.contract.ring import MAX_RECORD_BYTES
from stress.coordinator import jobs
from tests.conftest import read_events, run_cli, start_run, wait_for_iterations

MIB = 1 << 20


def _relu_model(path: Path, *channels: int) -> Path:
    """One 1 x C x 1024 x 1024 float32 input per output: C * 4 MiB, relu'd (MNN.expr)."""
    import MNN.expr as F

    outputs = []
    for k, count in enumerate(channels):
        x = F.placeholder([1, count, 1024, 1024], F.NCHW, F.float)
        x.name = f"x{k}"
        y = F.relu(x)
        y.name = f"y{k}"
        outputs.append(y)
    F.save(outputs, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("big-models")
    _relu_model(folder / "out16.mnn", 4)
    _relu_model(folder / "out64.mnn", 16)
    _relu_model(folder / "out256.mnn", 64)
    _relu_model(folder / "out16_48.mnn", 4, 12)  # two outputs: 16 and 48 MiB
    return folder


def _scenario(folder: Path, name: str, model: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nmodel: {model}\ntimeout: 120s\n{body}")
    return path


def _rows(run_dir: Path, columns: list[str]):
    data = ds.dataset(str(run_dir / "iterations"), format="parquet")
    return data.to_table(columns=columns)


def _summary(run_dir: Path) -> dict:
    return json.loads(run_cli("summary", str(run_dir), "--json").stdout)


def _verdicts(summary: dict) -> dict[str, str]:
    return {v["label"]: v["verdict"] for v in summary["variants"]}


@pytest.mark.integration
def test_16_and_48_mib_outputs_in_two_threads_of_both_apis_are_recorded_whole(models, tmp_path):
    """Two outputs (16 and 48 MiB), two threads, both APIs; values kept for the 16 MiB output
    only (``max_value_bytes`` both ways). Today's coordinator hung at the first record larger
    than its drain window."""
    path = _scenario(
        models,
        "two_outputs",
        "out16_48.mnn",
        # two iterations: the first record hung it, the second shows each output unchanged
        "iterations: 2\nrecord: {max_value_bytes: 16777216}\n"
        "matrix:\n  api: [session, module]\n  threads: [2]\n",
    )
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--workers", "2", timeout=240)
    rows = _rows(out, ["output_name", "nbytes", "status", "digest", "values"])
    assert rows.num_rows == 2 * 2 * 2 * 2  # variants x threads x iterations x outputs
    assert set(rows["status"].to_pylist()) == {"ok"}
    by_output = {n: rows.filter(pc.equal(rows["output_name"], n)) for n in ("y0", "y1")}
    assert set(by_output["y0"]["nbytes"].to_pylist()) == {16 * MIB}
    assert set(by_output["y1"]["nbytes"].to_pylist()) == {48 * MIB}
    assert len(set(rows["digest"].to_pylist())) == 2  # each output the same every time
    assert by_output["y1"]["values"].null_count == 8  # over max_value_bytes: digests only
    first = np.frombuffer(by_output["y0"]["values"][0].as_py(), np.float32)
    assert first.size == 4 * 1024 * 1024 and first.min() == 0.0 < first.max()  # relu'd noise
    summary = _summary(out)
    assert set(_verdicts(summary).values()) == {"ok"}
    assert all(v["grades"]["exact"] == 4 for v in summary["variants"])


@pytest.mark.integration
def test_64_and_256_mib_outputs_side_by_side_keep_the_coordinator_bounded(models, tmp_path):
    """256 MiB outputs with their values stored, 64 MiB ones without, two workers at once:
    the coordinator holds a few records at a time, never a ring's worth."""
    stored = _scenario(
        models,
        "out256",
        "out256.mnn",
        "iterations: 2\nrecord: {max_value_bytes: 268435456}\n",
    )
    digests_only = _scenario(
        models,
        "out64",
        "out64.mnn",
        "iterations: 3\nrecord: {max_value_bytes: 0}\nmatrix:\n  api: [module]\n  threads: [2]\n",
    )
    out = tmp_path / "run"
    with _running(stored, out, str(digests_only), "--workers", "2") as run:
        peak = _peak_private_memory(run, limit_s=300)
    assert run.returncode == 0, run.stderr.read()
    rows = _rows(out, ["scenario", "nbytes", "values", "status"])
    by_scenario = {s: rows.filter(pc.equal(rows["scenario"], s)) for s in ("out256", "out64")}
    assert by_scenario["out256"].num_rows == 2 and by_scenario["out64"].num_rows == 6
    assert set(by_scenario["out256"]["nbytes"].to_pylist()) == {256 * MIB}
    assert all(len(v) == 256 * MIB for v in by_scenario["out256"]["values"].to_pylist())
    assert by_scenario["out64"]["values"].null_count == 6
    assert set(rows["status"].to_pylist()) == {"ok"}
    assert set(_verdicts(_summary(out)).values()) == {"ok"}
    # Each 256 MiB record is copied out of the ring, then its values written: an Arrow column
    # and Parquet's page and compression buffers, about 5x the output at that moment (the
    # 64 MiB references' beside it). Not the gigabytes a 16-record ring per thread handed
    # over at once, nor what Arrow's allocator kept after each write.
    assert peak < 2560 * MIB, f"coordinator peak private memory {peak / MIB:.0f} MiB"


@pytest.mark.integration
def test_stored_16_mib_outputs_do_not_accumulate_in_the_coordinator(models, tmp_path):
    """Forty 16 MiB outputs with their values stored, a few records a drain: the coordinator
    holds about one flush's worth. pyarrow leaked each stored output's drained bytes, 16 MiB
    an iteration, for as long as the run went on (3.7 GiB after 205 iterations)."""
    # Forty are enough: such a leak keeps 640 MiB by the end, over the bound by itself (the
    # coordinator's own memory, about 150 MiB, comes on top)
    path = _scenario(
        models, "stored16", "out16.mnn", "iterations: 40\nrecord: {max_value_bytes: 16777216}\n"
    )
    out = tmp_path / "run"
    with _running(path, out, "--no-reference", "--workers", "1") as run:
        peak = _peak_private_memory(run, limit_s=240)
    assert run.returncode == 0, run.stderr.read()
    rows = _rows(out, ["values"])
    assert rows.num_rows == 40 and rows["values"].null_count == 0
    assert peak < 512 * MIB, f"coordinator peak private memory {peak / MIB:.0f} MiB"


@contextlib.contextmanager
def _running(*args: object) -> Iterator[subprocess.Popen]:
    """``start_run``, killed (with its workers) if the test fails while it runs: a hung
    coordinator must not outlive its test."""
    run = start_run(*args)  # type: ignore[arg-type]
    try:
        yield run
    finally:
        if run.poll() is None:
            for child in psutil.Process(run.pid).children(recursive=True):
                child.kill()
            run.kill()
            run.wait()


def _peak_private_memory(run: subprocess.Popen, limit_s: float) -> int:
    """The coordinator's highest private resident memory (RssAnon) until it exits: the rings
    it shares with its workers are not its own."""
    status, peak, deadline = Path(f"/proc/{run.pid}/status"), 0, time.monotonic() + limit_s
    while run.poll() is None and time.monotonic() < deadline:
        try:
            line = next(x for x in status.read_text().splitlines() if x.startswith("RssAnon"))
        except (OSError, StopIteration):
            break
        peak = max(peak, int(line.split()[1]) << 10)
        time.sleep(0.02)
    run.wait(timeout=max(1.0, deadline - time.monotonic()))
    return peak


def _stopped_by_sigterm(path: Path, out: Path, at_least: int) -> float:
    """Run ``path`` into ``out``, SIGTERM it once ``at_least`` iterations are on disk; the
    seconds it took to exit, with status 130."""
    with _running(path, out, "--no-reference") as run:
        wait_for_iterations(out, at_least=at_least, timeout=120)
        asked = time.monotonic()
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=120)
        took = time.monotonic() - asked
    assert run.returncode == 130
    return took


@pytest.mark.integration
def test_sigterm_stops_a_run_of_big_outputs_promptly(models, tmp_path):
    path = _scenario(models, "endless64", "out64.mnn", "duration: 120s\n")
    out = tmp_path / "run"
    took = _stopped_by_sigterm(path, out, at_least=3)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert _rows(out, ["iteration"]).num_rows >= 3
    assert took < 30, f"took {took:.1f} s to stop"


@pytest.mark.integration
def test_sigterm_does_not_wait_for_the_final_packing_of_big_parts(models, tmp_path):
    """A stopped run leaves its parts as they are (the run that finishes it packs them): with
    16 MiB outputs stored, repacking a few hundred MiB of parts after SIGTERM took 15-20 s,
    past `docker stop`'s 10 s before its SIGKILL."""
    path = _scenario(
        models,
        "stored_endless",
        "out16.mnn",
        "duration: 120s\nrecord: {max_value_bytes: 16777216}\nmatrix:\n  threads: [2]\n",
    )
    out = tmp_path / "run"
    took = _stopped_by_sigterm(path, out, at_least=40)
    assert _rows(out, ["iteration"]).num_rows >= 40
    assert len(list((out / "iterations").glob("part-*.parquet"))) > 1  # not packed
    # docker stop's 10 s is met on a quiet machine (3-4 s: the ring's 16 records of 16 MiB are
    # written first); beside another heavy test it took 9.3 s, and 10.5 s once in CI: the bound
    # here is what the suite can hold to on a loaded 2-core machine, not docker's
    assert took < 12, f"took {took:.1f} s to stop"


@pytest.mark.integration
def test_ctrl_c_during_the_final_packing_ends_it_at_once(models, tmp_path):
    """Ctrl-C once every variant is done, while the parts are packed: the packing stops (the
    merge in progress is dropped, its sources kept), the run is complete with all its rows.
    It was ignored: 20 s more of repacking 16 MiB outputs, then exit 0 as if never asked."""
    path = _scenario(
        models,
        "stored_packed",
        "out16.mnn",
        "iterations: 60\nrecord: {max_value_bytes: 16777216}\nmatrix:\n  threads: [2]\n",
    )
    out = tmp_path / "run"
    with _running(path, out, "--no-reference") as run:
        deadline = time.monotonic() + 180
        while not _packing(out) and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        asked = time.monotonic()
        run.send_signal(signal.SIGINT)
        run.wait(timeout=120)
        took = time.monotonic() - asked
    assert run.returncode == 0, run.stderr.read()
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert _rows(out, ["iteration"]).num_rows == 120
    parts = list((out / "iterations").glob("part-*.parquet"))
    assert len(parts) > 20 and not list((out / "iterations").glob(".*.tmp"))  # as written
    assert took < 8, f"took {took:.1f} s to stop"


def _packing(out: Path) -> bool:
    """Every variant done and a merged part being written (its name a span of parts): the
    final packing has begun."""
    log = out / "run.log"
    done = log.exists() and "  done  " in log.read_text()
    return done and any((out / "iterations").glob(".part-*-*.parquet.tmp"))


@pytest.mark.integration
def test_validate_refuses_outputs_that_no_record_can_hold(models):
    """A static 4 GiB output (1 x 1024^3 float32): more than a record's 32-bit length."""
    _relu_model(models / "out4096.mnn", 1024)
    path = _scenario(models, "vast", "out4096.mnn", "iterations: 1\n")
    done = run_cli("validate", str(path), check=False)
    assert done.returncode == 2
    assert (
        "vast.yaml: model: the model's outputs (y0 [1, 1024, 1024, 1024] float32) cannot be "
        "recorded: one iteration's outputs take 4,294,967,408 bytes in the record ring, more "
        "than a record can hold (4,294,967,280: a 32-bit length)\n"
        "  fix: use a model with smaller outputs\n"
    ) in done.stderr


@pytest.mark.integration
def test_a_record_no_ring_can_hold_quarantines_its_variant(scenario_file, tmp_path):
    """A worker whose output turns out larger than any record (a 4 GiB view here, through
    the test-only fault) is refused with a reason, not restarted for ever or hung on."""
    path = scenario_file("name: grows\nmodel: tiny\niterations: 50\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference", fault="huge_output@2")
    events = read_events(out)
    assert list(events.kind) == ["resize", "quarantine"]
    assert "cannot be recorded here" in events.message.iloc[1]
    assert "more than a record can hold (4,294,967,280: a 32-bit length)" in events.message.iloc[1]
    assert sorted(_rows(out, ["iteration"])["iteration"].to_pylist()) == [0, 1]
    assert _verdicts(_summary(out)) == {"api=session": "QUARANTINED"}


def test_rings_hold_sixteen_records_per_thread_within_256_mib_and_two_beyond():
    """Small outputs keep their room to breathe; big ones get two records (one read, one
    written), not sixteen per thread: 4 GiB a worker for a 256 MiB output before."""
    assert jobs.ring_for_records(1024) == jobs.MIN_RING_BYTES
    assert jobs.ring_for_records(4 * MIB, threads=2) == 128 * MIB  # 16 x 2 x 4 MiB
    assert jobs.ring_for_records(64 * MIB, threads=2) == 256 * MIB  # capped
    assert jobs.ring_for_records(256 * MIB, threads=4) == 512 * MIB  # two records
    for record in (1, MIB, 100 * MIB, 1000 * MIB):  # a writer takes at most half the ring
        assert jobs.ring_for_records(record, threads=3) >= 2 * record


def test_a_record_is_refused_only_beyond_a_records_length_or_the_machines_share():
    assert jobs.ring_refusal(256 * MIB) is None
    too_long = jobs.ring_refusal(MAX_RECORD_BYTES + 1)
    assert too_long is not None and "more than a record can hold" in too_long
    share = jobs.max_ring_bytes() // jobs.MIN_RING_RECORDS
    assert jobs.ring_refusal(share) is None
    over = jobs.ring_refusal(share + 16)
    assert over is not None and "1/4 share of this machine's memory" in over


@pytest.mark.integration
def test_validate_judges_only_outputs_of_known_size(models, scenario_file):
    """A dynamic model's outputs are known when produced: however large its inputs make the
    estimate, validate does not refuse it on a guess (a run that meets a record too large
    quarantines the variant, above)."""
    _dynamic_model(models / "dynamic.mnn")
    shape = "{shape: [1, 32768, 16384]}"  # 2 GiB each: a 4 GiB estimate
    body = f"iterations: 1\ninputs:\n  x0: {shape}\n  x1: {shape}\n"
    done = run_cli("validate", str(_scenario(models, "guess", "dynamic.mnn", body)), check=False)
    assert done.returncode == 0, done.stderr


def _dynamic_model(path: Path) -> None:
    """Two inputs of free size, each relu'd to an output of its size."""
    import MNN.expr as F

    outputs = []
    for k in range(2):
        x = F.placeholder([1, -1, -1], F.NCHW, F.float)
        x.name = f"x{k}"
        y = F.relu(x)
        y.name = f"y{k}"
        outputs.append(y)
    F.save(outputs, str(path))
