"""Every exit status of every command, from a real ``python -m stress`` process: what a cron
job sees. Elsewhere: ``run`` 3 (test_coordinator: no iteration completed; test_rundir: a full
disk), ``run`` 130 (test_stopping, test_coordinator), ``validate`` 130 (test_stopping),
``bisect`` 0 (test_versions: a real bisect)."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from stress import bug_report
from stress.cli.main import main
from stress.exit_codes import COMMANDS, ExitCode, markdown_table, meanings
from stress.injected_bug import ENV_VAR as BUG_VAR
from stress.versions import envs
from tests import zygote
from tests.cli.test_stopping import _child_running
from tests.conftest import REPO, start_run, wait_for_iterations
from tests.versions.test_versions import lasting_envs, other_version  # noqa: F401 (fixtures)

SCENARIO = "name: codes\nmodel: tiny\niterations: {n}\nmax_crashes: 3\n"
real = pytest.mark.integration  # a real process; the --help and README checks are quick
BUG_LINE = re.compile(r"error: bug in mnn-stress \(not a finding\): (.+); full traceback in (.+); ")


def cli(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    """``python -m stress ARGS`` in a process of its own, forked by the tests' zygote (as
    ``run_cli`` does): its own pid, streams, exit status and atexit, what a fresh one prints,
    without paying the imports again; an environment that changes an interpreter's start
    (``PYTHONIOENCODING``) gets a fresh interpreter. The tests that close or redirect a
    command's streams start it fresh themselves."""
    return zygote.run(["stress", *args], {**os.environ, **env}, cwd, 300)


def bug_file(done: subprocess.CompletedProcess) -> Path:
    """The one error line names the bug and the file holding its traceback."""
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    found = BUG_LINE.match(lines[0])
    assert found, lines[0]
    assert "InjectedBug: injected test bug" in found[1] and "Traceback" not in done.stderr
    path = Path(found[2])
    text = path.read_text()
    assert "Traceback (most recent call last)" in text and "InjectedBug" in text
    return path


def cache_bugs() -> Path:
    return Path(os.environ["MNN_STRESS_CACHE"]) / "bugs"


@dataclass(frozen=True)
class Runs:
    root: Path
    scenario: Path
    clean: Path  # a complete run with nothing wrong
    crashed: Path  # the same scenario, a worker killed by SIGSEGV
    variant: str  # the one variant's id


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """A scenario, a clean run of it and one with a worker crash: ``run`` exits 0 and, with
    --fail-on-findings, 1."""
    root = tmp_path_factory.mktemp("codes")
    scenario = root / "codes.yaml"
    scenario.write_text(SCENARIO.format(n=20))
    clean = cli("run", str(scenario), "--out", str(root / "clean"), "--fail-on-findings")
    assert clean.returncode == ExitCode.OK, clean.stderr
    crashed = cli(
        *("run", str(scenario), "--out", str(root / "crashed"), "--fail-on-findings"),
        MNN_STRESS_TEST_FAULT="segv@5",
    )
    assert crashed.returncode == ExitCode.FINDINGS, crashed.stderr
    variants = json.loads((root / "clean" / "manifest.json").read_text())["variants"]
    return Runs(root, scenario, root / "clean", root / "crashed", next(iter(variants)))


@real
def test_run_statuses(runs):
    """0 and 1 (with --fail-on-findings) come from the fixture; 2 before anything runs."""
    bad = runs.root / "bad.yaml"
    bad.write_text("name: bad\nmodel: tiny\niterations: -1\n")
    done = cli("run", str(bad), "--out", str(runs.root / "never"))
    assert done.returncode == ExitCode.USER_ERROR and "iterations" in done.stderr
    assert not (runs.root / "never").exists()
    again = cli("run", str(runs.scenario), "--out", str(runs.clean))
    assert again.returncode == ExitCode.USER_ERROR and "already holds a run" in again.stderr


def assert_statuses(expected: list[tuple[tuple[str, ...], ExitCode]], **env: str) -> None:
    for args, status in expected:
        done = cli(*args, **env)
        assert done.returncode == status, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr


@real
def test_report_and_compare_statuses(runs):
    clean, crashed = str(runs.clean), str(runs.crashed)
    assert_statuses(
        [
            (("report", clean), ExitCode.OK),
            (("report", crashed), ExitCode.FINDINGS),
            (("compare", clean, clean), ExitCode.OK),
            (("compare", clean, crashed), ExitCode.FINDINGS),
        ]
    )


@real
def test_summary_calibrate_and_repro_statuses(runs):
    crashed = str(runs.crashed)
    assert_statuses(
        [
            (("summary", crashed), ExitCode.OK),
            (("summary", str(runs.root)), ExitCode.USER_ERROR),  # not a run directory
            (("calibrate", str(runs.clean)), ExitCode.OK),
            (("repro", crashed, runs.variant, "--runs", "0"), ExitCode.OK),
            (("repro", crashed, "v0000000000", "--runs", "0"), ExitCode.USER_ERROR),
        ]
    )


@real
def test_validate_models_and_schema_statuses(runs, tmp_path):
    assert_statuses(
        [
            (("validate", str(runs.scenario)), ExitCode.OK),
            (("validate", str(tmp_path / "missing.yaml")), ExitCode.USER_ERROR),
            (("models",), ExitCode.OK),
            (("schema",), ExitCode.OK),
            (("schema", "--no-such-option"), ExitCode.USER_ERROR),  # click's usage error
        ]
    )


@real
def test_envs_and_bisect_statuses(runs, tmp_path):
    """bisect's 0 and 1 need another MNN release: test_versions, and the last test here."""
    scenario = str(runs.scenario)
    assert_statuses(
        [
            (("envs", "list"), ExitCode.OK),
            (("envs", "prepare", scenario), ExitCode.OK),  # nothing to prepare
            (("envs", "prepare", "--version", "three"), ExitCode.USER_ERROR),
            (("bisect", scenario, "--variant", "v0000000000"), ExitCode.USER_ERROR),
        ],
        MNN_STRESS_ENVS=str(tmp_path / "envs"),
    )


def _every_command(runs: Runs, tmp_path: Path) -> list[tuple[tuple[str, ...], Path | None]]:
    """A parseable invocation of each command, and the run directory it works in."""
    scenario, clean = str(runs.scenario), runs.clean
    return [
        (("validate", scenario), None),
        (("run", scenario, "--out", str(tmp_path / "new")), None),
        (("run", "--resume", str(clean)), clean),
        (("summary", str(clean)), clean),
        (("report", str(clean)), clean),
        (("compare", str(clean), str(clean)), None),
        (("repro", str(clean), runs.variant), clean),
        (("calibrate", str(clean)), clean),
        (("models",), None),
        (("schema",), None),
        (("envs", "prepare", scenario), None),
        (("envs", "list"), None),
        (("bisect", scenario, "--variant", "v0", "--out", str(tmp_path / "b")), None),
    ]


@real
def test_a_bug_in_any_command_is_70_one_line_and_a_traceback_file(runs, tmp_path):
    """A RuntimeError nobody expected, as each command starts: never 1, never a traceback on
    the terminal; the traceback is in the run directory when there is one, else the cache."""
    invocations = _every_command(runs, tmp_path)
    assert {" ".join(a[:2]) if a[0] == "envs" else a[0] for a, _ in invocations} == set(COMMANDS)
    for args, run_dir in invocations:
        done = cli(*args, **{BUG_VAR: "command"})
        assert done.returncode == ExitCode.BUG, (args, done.stderr)
        path = bug_file(done)
        assert path.parent == (run_dir or cache_bugs()), args
    assert not (tmp_path / "new").exists()


@real
def test_a_bug_outside_the_coordinator_fails_the_run_and_says_where(runs, tmp_path):
    out = tmp_path / "run"
    done = cli("run", str(runs.scenario), "--out", str(out), **{BUG_VAR: "run-start"})
    assert done.returncode == ExitCode.BUG, done.stderr
    assert bug_file(done).parent == out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "bug in mnn-stress" in manifest["reason"]
    assert "InjectedBug" in manifest["reason"] and str(out) in manifest["reason"]
    last = json.loads((out / "journal.jsonl").read_text().splitlines()[-1])
    assert last["run"] == "failed"
    summary = json.loads(cli("summary", str(out), "--json").stdout)
    assert summary["status"] == "failed"


@real
def test_a_bug_in_the_coordinator_loop_fails_the_run_with_70(runs, tmp_path):
    out = tmp_path / "run"
    args = ("run", str(runs.scenario), "--out", str(out), "--duration", "30s")
    done = cli(*args, **{BUG_VAR: "run-loop"})
    assert done.returncode == ExitCode.BUG, done.stderr
    assert "Traceback" not in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert "coordinator failed: InjectedBug" in manifest["reason"]
    (traceback,) = out.glob("bug-*-run-*.txt")
    assert str(traceback) in manifest["reason"] and str(traceback) in done.stderr
    assert "InjectedBug" in traceback.read_text()


@real
def test_a_harness_error_in_a_worker_fails_the_run_with_70(runs, tmp_path):
    out = tmp_path / "run"
    done = cli("run", str(runs.scenario), "--out", str(out), MNN_STRESS_TEST_FAULT="raise@3")
    assert done.returncode == ExitCode.BUG, done.stderr
    line = next(x for x in done.stderr.splitlines() if x.startswith("error:"))
    assert "harness bug" in line and "their tracebacks are in" in line
    (traceback,) = out.glob("bug-*-run-*.txt")
    assert str(traceback) in line and "InjectedFault" in traceback.read_text()


@real
def test_resume_statuses(runs, tmp_path):
    """Interrupted (130), resumed into a bug (70, the manifest failed), resumed to its end (0),
    and a complete run cannot be resumed (2)."""
    out = tmp_path / "run"
    coordinator = start_run(runs.scenario, out, "--duration", "4s", "--no-reference")
    wait_for_iterations(out, 1)
    coordinator.send_signal(signal.SIGINT)
    _, stderr = coordinator.communicate(timeout=60)
    assert coordinator.returncode == ExitCode.INTERRUPTED, stderr
    broken = cli("run", "--resume", str(out), **{BUG_VAR: "run-start"})
    assert broken.returncode == ExitCode.BUG and bug_file(broken).parent == out
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    resumed = cli("run", "--resume", str(out))
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    done = cli("run", "--resume", str(out))
    assert done.returncode == ExitCode.USER_ERROR and "complete" in done.stderr


@real
def test_ctrl_c_in_a_command_that_builds_models_is_130(tmp_path):
    models = subprocess.Popen(
        [sys.executable, "-m", "stress", "models"],
        cwd=REPO,
        env={**os.environ, "MNN_STRESS_CACHE": str(tmp_path / "cache")},  # nothing built yet
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal does
    )
    assert _child_running(models.pid, "stress.models.probe") is not None
    models.send_signal(signal.SIGINT)
    _, stderr = models.communicate(timeout=60)
    assert models.returncode == ExitCode.INTERRUPTED, stderr
    assert "Traceback" not in stderr


@real
def test_what_the_machine_refuses_is_2_naming_it_not_a_bug(runs, tmp_path):
    """``repro --out`` under a file, ``summary`` into a full disk: the machine said no, so
    one message names the file and the fix, exit 2; not a bug (70), no bug report."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    under_a_file = cli(
        "repro", str(runs.crashed), runs.variant, "--runs", "0", "--out", str(blocker / "r.py")
    )
    assert under_a_file.returncode == ExitCode.USER_ERROR, under_a_file.stderr
    assert f"{blocker}: --out: cannot write the script: File exists" in under_a_file.stderr
    assert "fix: give --out a .py file in a folder" in under_a_file.stderr
    with open("/dev/full", "w") as full:
        into_full_disk = subprocess.run(
            [sys.executable, "-m", "stress", "summary", str(runs.clean)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
    assert into_full_disk.returncode == ExitCode.USER_ERROR, into_full_disk.stderr
    assert "the machine refused: No space left on device (writing the output" in (
        into_full_disk.stderr
    )
    for done in (under_a_file, into_full_disk):
        assert "Traceback" not in done.stderr and "bug in mnn-stress" not in done.stderr


@real
def test_a_name_the_terminal_cannot_encode_is_escaped_not_a_bug(runs, tmp_path):
    """A run or report path with ``é`` on an ASCII terminal (``LANG=C`` in cron, or
    ``PYTHONIOENCODING=ascii``): written as ``\\xe9``, exit as ever, never 70."""
    out = tmp_path / "r\u00e9sultats"
    done = cli("run", str(runs.scenario), "--out", str(out), PYTHONIOENCODING="ascii")
    assert done.returncode == ExitCode.OK, done.stderr
    assert "run directory: " + str(out).replace("\u00e9", "\\xe9") in done.stdout


@real
def test_a_command_with_stdout_and_stderr_closed_runs(runs):
    """``mnn-stress summary RUN >&- 2>&-`` (a cron line that wants no mail): it crashed as
    it started (``sys.stdout`` is None), exit 1."""

    def closed() -> None:
        os.close(1)
        os.close(2)

    done = subprocess.run(
        [sys.executable, "-m", "stress", "summary", str(runs.clean)],
        cwd=REPO,
        preexec_fn=closed,
        timeout=120,
    )
    assert done.returncode == ExitCode.OK


INTERRUPTED_QUERY = """
import os, signal, threading, duckdb
from stress.cli.base import Top
top = Top("mnn-stress")
@top.command()
def query():
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    duckdb.sql("select count(*) from range(100000000000) a, range(10) b").fetchall()
top(["query"])
"""


@real
def test_ctrl_c_during_a_duckdb_query_is_130_not_a_bug(tmp_path):
    """DuckDB turns Ctrl-C during a query into its own exception, not a KeyboardInterrupt:
    ``summary`` or ``report`` stopped by Ctrl-C over a big run must still say interrupted."""
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_QUERY],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "MNN_STRESS_CACHE": str(tmp_path)},
        # Ctrl-C as a terminal delivers it, even when the suite itself was started in the
        # background (`./run.sh test &`: the shell makes it ignore SIGINT, and so the command
        # would, and the query run on for the test's 60 s)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == ExitCode.INTERRUPTED, done.stderr
    assert "interrupted" in done.stderr and "bug" not in done.stderr


@real
@pytest.mark.parametrize("args", [("schema",), ("summary", "RUN")])
def test_a_reader_that_goes_away_is_141_not_1(runs, args):
    """``mnn-stress report RUN | head`` in a cron job: the closed pipe is not a finding."""
    args = tuple(str(runs.crashed) if a == "RUN" else a for a in args)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    done = subprocess.run(
        [sys.executable, "-m", "stress", *args], stdout=write, stderr=subprocess.PIPE, cwd=REPO
    )
    os.close(write)
    assert done.returncode == ExitCode.BROKEN_PIPE, done.stderr
    assert not done.stderr


@real
def test_a_run_whose_readers_go_away_goes_on_to_its_end(runs, tmp_path):
    """``run ... 2>&1 | tee log`` and the terminal closes: the progress on stderr has no
    reader, yet the run records to its end (it stopped at once, its manifest left
    ``running``). Only a summary that cannot be printed makes it 141."""
    timed = tmp_path / "timed.yaml"
    timed.write_text("name: gone\nmodel: tiny\nduration: 3s\n")
    summary = tmp_path / "summary.txt"
    with summary.open("w") as stdout:
        both_gone, stderr_gone = (
            subprocess.Popen(
                [sys.executable, "-m", "stress", "run", str(timed), "--out", str(out)],
                stdout=stdout if out.name == "stderr-gone" else subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=REPO,
            )
            for out in (tmp_path / "both-gone", tmp_path / "stderr-gone")
        )
        for proc in (both_gone, stderr_gone):
            proc.stderr.readline()  # it has begun to talk: now nobody listens
            proc.stderr.close()
        both_gone.stdout.close()
        assert both_gone.wait(timeout=120) == ExitCode.BROKEN_PIPE
        assert stderr_gone.wait(timeout=120) == ExitCode.OK
    for out in (tmp_path / "both-gone", tmp_path / "stderr-gone"):
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "complete", out
        assert {v["status"] for v in manifest["variants"].values()} == {"done"}, out
    printed = summary.read_text()
    assert "(complete, MNN" in printed and f"run directory: {tmp_path / 'stderr-gone'}" in printed


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (OSError("no errno: ours"), ExitCode.BUG),
        (FileNotFoundError(errno.ENOENT, "No such file", "manifest.jsn"), ExitCode.BUG),
        (OSError(errno.EBADF, "Bad file descriptor"), ExitCode.BUG),
        (PermissionError(errno.EACCES, "Permission denied", "/x"), ExitCode.USER_ERROR),
        (OSError(errno.ENOSPC, "No space left on device", "/x"), ExitCode.USER_ERROR),
        (MemoryError(), ExitCode.USER_ERROR),
        (RuntimeError("Query interrupted"), ExitCode.INTERRUPTED),
        (RuntimeError("anything else"), ExitCode.BUG),
    ],
)
def test_what_a_command_raises_maps_to_its_status(raised, status, tmp_path, monkeypatch):
    """The top's sorting, one exception each: the machine's refusals are the user's (2); a
    missing file, a bad descriptor, an OSError without an errno and any other exception are
    ours (70): paths the user gives are checked where they are used."""
    from stress.cli.base import Top

    monkeypatch.setenv("MNN_STRESS_CACHE", str(tmp_path))
    top = Top("mnn-stress")

    @top.command()
    def fails() -> None:
        raise raised

    done = CliRunner().invoke(top, ["fails"])
    assert done.exit_code == status, done.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_each_status_of_the_command(command):
    done = CliRunner().invoke(main, [*command.split(), "--help"], terminal_width=200)
    assert done.exit_code == 0
    listed = done.output.split("Exit status", 1)[1]
    for code, text in meanings(command):
        assert re.search(rf"^\s+{int(code)}\s+{re.escape(text[:30])}", listed, re.M), code


def test_the_readme_table_is_the_one_definition():
    readme = (REPO / "docs" / "reference" / "exit_codes.md").read_text()
    start = readme.index("<!-- exit-codes -->\n") + len("<!-- exit-codes -->\n")
    end = readme.index("<!-- /exit-codes -->")
    assert readme[start:end] == markdown_table()


@real
def test_bisect_without_a_change_is_1(other_version, runs, tmp_path):  # noqa: F811
    """The tiny model is consistent under both releases: no version changed the outcome."""
    installed = envs.mnn_version()
    done = cli(
        *("bisect", str(runs.scenario), "--variant", runs.variant, "--iterations", "5"),
        *("--versions", f"{other_version},{installed}", "--out", str(tmp_path / "bisect")),
        MNN_STRESS_ENVS=os.environ[envs.ENVS_VAR],
    )
    assert done.returncode == ExitCode.NO_CHANGE, done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_traceback_goes_where_it_can_be_written(tmp_path, monkeypatch):
    """The run directory when it is one; else the cache folder; else the temporary folder."""
    try:
        raise RuntimeError("not expected")
    except RuntimeError as exc:
        bug = exc
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert bug_report.write_traceback(bug, "summary", run_dir).parent == run_dir
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("MNN_STRESS_CACHE", str(tmp_path / "cache"))
    into_cache = bug_report.write_traceback(bug, "summary", not_a_folder)
    assert into_cache.parent == tmp_path / "cache" / "bugs"
    assert "RuntimeError: not expected" in into_cache.read_text()
    monkeypatch.setenv("MNN_STRESS_CACHE", str(not_a_folder))  # its bugs/ cannot be made
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tempfile.tempdir = None  # read TMPDIR again
    try:
        assert bug_report.write_traceback(bug, "summary").parent == tmp_path / "tmp"
    finally:
        tempfile.tempdir = None
