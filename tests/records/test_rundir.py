"""A night that ends badly says so and keeps what it recorded: full disks, file-size limits,
read-only directories, killed writers, two runs into one directory. Real file systems (a
small tmpfs where this machine lets us mount one), real rlimits, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from stress.records.parts import PartWriter
from stress.records.rundir import RunLayout, next_worker_id
from tests.conftest import (
    REPO,
    read_events,
    read_iterations,
    run_cli,
    start_run,
    wait_for_iterations,
    workers_of,
)

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def small_filesystem(path: Path, size: str, read_only: bool = False):
    """A real tmpfs of ``size`` at ``path``; the test is skipped where mounting is not
    allowed (not root, or a container without the capability)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> None:
    """Take every free byte of the file system under ``directory``."""
    with open(directory / "filler", "wb", buffering=0) as filler:
        for chunk in (1 << 20, 4096):
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\xff" * chunk)


def iterations_on_disk(out: Path) -> dict[str, int]:
    rows = read_iterations(out)
    return rows.groupby("variant_id").iteration.nunique().to_dict()


@pytest.mark.integration
def test_a_run_without_deaths_still_has_an_events_dataset_with_its_columns(scenario_file, tmp_path):
    """A glob over events/ (DuckDB, polars, the docs' queries) found no file and failed when
    nobody died: every dataset exists from the start, an empty part holding its schema."""
    from stress.records.events import EVENT_SCHEMA
    from stress.records.schema import ITERATION_SCHEMA

    out = tmp_path / "run"
    run_cli(
        "run", str(scenario_file("name: calm\nmodel: tiny\niterations: 3\n")), "--out", str(out)
    )
    for layout in (RunLayout(out), RunLayout(out).reference):
        found = duckdb.sql(f"SELECT * FROM '{layout.events}/*.parquet'")
        assert found.columns == EVENT_SCHEMA.names and found.fetchall() == []
        assert ds.dataset(str(layout.iterations)).schema.names == ITERATION_SCHEMA.names
    rows = duckdb.sql(f"SELECT count(*) FROM '{out}/iterations/*.parquet'").fetchone()
    assert rows == (3,)


def test_an_empty_part_is_written_only_where_a_dataset_has_none(tmp_path):
    writer = PartWriter(tmp_path / "events")
    writer.write_schema(pa.schema([("x", pa.int32())]))
    writer.write(pa.table({"x": pa.array([1], pa.int32())}))
    again = PartWriter(tmp_path / "events")  # a resumed run: parts are there already
    again.write_schema(pa.schema([("x", pa.int32())]))
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        "part-000000.parquet",
        "part-000001.parquet",
    ]


def test_full_disk_stops_the_run_cleanly_and_loses_nothing(scenario_file, tmp_path):
    path = scenario_file(
        "name: fill\nmodel: tiny\nduration: 60s\nmatrix:\n  api: [session, module]\n"
    )
    with small_filesystem(tmp_path / "disk", "16m") as disk:
        out = disk / "run"
        coordinator = start_run(path, out, "--workers", "2", "--no-reference")
        wait_for_iterations(out, 1000)
        fill(disk)  # another program takes the rest of the disk
        stdout, stderr = coordinator.communicate(timeout=120)
        assert coordinator.returncode == 3, stderr
        assert "No space left on device" in stderr and str(disk) in stderr
        assert "Traceback" not in stderr
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "failed" and "No space left" in manifest["reason"]
        lines = (out / "journal.jsonl").read_text().splitlines()
        assert json.loads(lines[-1])["run"] == "failed"
        # Every iteration the workers completed reached the disk.
        completed = {vid: v["completed"] for vid, v in manifest["variants"].items()}
        assert sum(completed.values()) > 1000
        assert iterations_on_disk(out) == {k: v for k, v in completed.items() if v}
        assert not workers_of(coordinator.pid)
        # the workers were stopped by the run, not "from outside": no such handover events
        events = read_events(out)
        assert events is None or not events.message.str.contains("from outside").any()
        summary = json.loads(run_cli("summary", str(out), "--json").stdout)
        assert summary["status"] == "failed"


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _run_limited(args: list[str], limit: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stress", "run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_file_size(limit),
    )


def test_file_size_limit_too_small_for_the_rings_is_refused(scenario_file, tmp_path):
    path = scenario_file("name: limited\nmodel: tiny\niterations: 10\n")
    done = _run_limited([str(path), "--out", str(tmp_path / "run")], 8 << 20)
    assert done.returncode == 2, done.stdout
    assert "ulimit -f" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_read_only_results_directory_is_a_clear_error(scenario_file, tmp_path):
    path = scenario_file("name: ro\nmodel: tiny\niterations: 10\n")
    target = tmp_path / "ro"
    if os.geteuid() != 0:
        target.mkdir()
        target.chmod(0o555)
        context = contextlib.nullcontext(target)
    else:  # root writes through permission bits: use a file system mounted read-only
        context = small_filesystem(target, "1m", read_only=True)
    with context:
        done = run_cli("run", str(path), "--out", str(target / "run"), check=False)
    assert done.returncode == 2
    assert "Read-only file system" in done.stderr or "Permission denied" in done.stderr
    assert "Traceback" not in done.stderr


def test_part_killed_mid_write_is_never_visible_to_readers(tmp_path):
    directory = tmp_path / "iterations"
    PartWriter(directory).write(pa.table({"x": [1, 2, 3]}))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; import pyarrow as pa; from pathlib import Path\n"
            "from stress.records.parts import PartWriter\n"
            "big = pa.table({'x': pa.array([os.urandom(1 << 20) for _ in range(160)])})\n"
            "PartWriter(Path(sys.argv[1])).write(big)\n",
            str(directory),
        ],
        cwd=REPO,
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".") for p in directory.iterdir()):
        assert time.monotonic() < deadline and writer.poll() is None, "no write in progress"
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    hidden = [p.name for p in directory.iterdir() if p.name.startswith(".")]
    assert hidden, "the kill should have landed mid-write"
    assert ds.dataset(str(directory), format="parquet").to_table()["x"].to_pylist() == [1, 2, 3]
    count = duckdb.sql(f"select count(*) from read_parquet('{directory}/*.parquet')").fetchone()
    assert count == (3,)


def test_two_runs_into_one_directory_exactly_one_proceeds(scenario_file, tmp_path):
    path = scenario_file("name: twice\nmodel: tiny\nduration: 2s\n")
    out = tmp_path / "run"
    runs = [start_run(path, out, "--workers", "1", "--no-reference") for _ in range(2)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "in use by another mnn-stress run" in refused or "already holds a run" in refused
    assert "Traceback" not in refused
    assert read_iterations(out).run_id.nunique() == 1


@pytest.mark.parametrize("workers", ["0", "2"])  # in one process, and as ./run.sh test runs
def test_conftest_leaves_no_cache_behind(tmp_path, workers):
    """One cache for the session, shared by pytest-xdist's workers, removed at its end."""
    env = {k: v for k, v in os.environ.items() if k != "MNN_STRESS_CACHE"}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'base'}",
            *("-n", workers),
            "tests/scenario/test_scenario.py::test_duration_parsing",
            # builds tiny in the cache:
            "tests/models/test_models.py::test_user_mnn_file_is_inspected",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list(tmp_path.glob("mnn-stress-cache-*"))


def test_disk_full_at_the_final_flush_is_saved_by_the_reserve(scenario_file, tmp_path, monkeypatch):
    """The disk fills after the last in-loop write (here: when the variant is done, in
    process): the final flush fails, the reserve makes room, and every row is written."""
    from stress.coordinator.plan import Budget
    from stress.coordinator.runner import RunHooks, execute
    from stress.records import recorder
    from stress.records.states import RunStatus, VariantStatus

    monkeypatch.setattr(recorder, "FLUSH_S", 600.0)  # every row waits for the final flush
    path = scenario_file("name: late\nmodel: tiny\niterations: 3000\n")
    with small_filesystem(tmp_path / "disk", "16m") as disk:
        out = disk / "run"

        def fill_when_done(state) -> None:
            if state.status is VariantStatus.DONE:
                fill(disk)

        result = execute([path], out, 1, Budget(), RunHooks(on_change=fill_when_done))
        assert result.status is RunStatus.FAILED and "No space left" in result.reason
        assert "could not be written" not in result.reason
        assert sorted(read_iterations(out).iteration) == list(range(3000))
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "failed"
        assert [v["status"] for v in manifest["variants"].values()] == ["done"]


@pytest.mark.parametrize("through_symlink", [False, True])
def test_out_holding_other_files_is_refused_and_left_untouched(
    scenario_file, tmp_path, through_symlink
):
    """``--out`` symlinked to ``/`` once wrote a run into ``/``; a folder of someone else's
    files is refused, whatever path leads to it (never tested on ``/`` itself)."""
    path = scenario_file("name: elsewhere\nmodel: tiny\niterations: 5\n")
    others = tmp_path / "others"
    others.mkdir()
    (others / "notes.txt").write_text("mine")
    (others / "photos").mkdir()
    out = others
    if through_symlink:
        out = tmp_path / "link"
        out.symlink_to(others)
    done = run_cli("run", str(path), "--out", str(out), check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{others}" in done.stderr and (f"where {out} leads" in done.stderr) == through_symlink
    assert "is not empty (notes.txt, photos) and is not an mnn-stress run directory" in done.stderr
    assert sorted(p.name for p in others.iterdir()) == ["notes.txt", "photos"]  # not even a lock


@pytest.mark.parametrize("through_symlink", [False, True])
def test_out_may_be_an_empty_folder_or_a_symlink_to_one(scenario_file, tmp_path, through_symlink):
    path = scenario_file("name: empty\nmodel: tiny\niterations: 5\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = empty
    if through_symlink:
        out = tmp_path / "link"
        out.symlink_to(empty)
    # no reference pass (one worker start less): the test is about where the run goes
    done = run_cli("run", str(path), "--out", str(out), "--no-reference")
    assert f"run directory: {empty} (1 variants" in done.stderr  # where it goes, said first
    assert len(read_iterations(empty)) == 5
    again = run_cli("run", str(path), "--out", str(out), check=False)
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert f"mnn-stress run --resume {empty}" in again.stderr


def test_every_name_a_run_leaves_is_one_the_layout_knows(scenario_file, tmp_path):
    """A run with a crash (a worker log, a core folder where gdb can read cores, a
    replacement) leaves only files and folders that ``RunLayout`` names, in the run
    directory and in its reference pass: no module names a file of its own."""
    path = scenario_file("name: layout\nmodel: tiny\niterations: 40\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), fault="segv@5", check=False)
    layout = RunLayout(out)
    known = {
        p.name
        for p in (layout.manifest, layout.journal, layout.run_log, *layout.datasets)
        + (layout.damaged, layout.logs, layout.cores, layout.lock, layout.reserve)
        + (layout.reference.root,)
    }
    assert {p.name for p in out.iterdir()} <= known
    reference = {p.name for p in layout.reference.root.iterdir()}
    assert reference <= known | {layout.onnxruntime.name}
    assert layout.iterations.is_dir() and layout.logs.is_dir() and layout.manifest.is_file()
    logs = sorted(p.name for p in layout.logs.iterdir())
    assert logs and all(
        layout.worker_log(name.rsplit("-w", 1)[0], int(name.rsplit("-w", 1)[1][:-4])).name == name
        for name in logs
    )
    assert next_worker_id(layout, layout.reference) == max(layout.worker_ids()) + 1
