"""Shared fixtures: a private model cache, scenario files, and running the real CLI."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import textwrap
import time
from pathlib import Path

import psutil
import pyarrow.dataset as ds
import pytest

from tests import zygote

REPO = Path(__file__).resolve().parents[1]
_OWN_CACHE: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """One model cache for the whole session, away from the user's own; removed at the end
    unless the caller chose it (``MNN_STRESS_CACHE`` set beforehand)."""
    global _OWN_CACHE
    if not os.environ.get("MNN_STRESS_CACHE"):
        _OWN_CACHE = tempfile.mkdtemp(prefix="mnn-stress-cache-")
        os.environ["MNN_STRESS_CACHE"] = _OWN_CACHE
    os.environ.pop("MNN_STRESS_TEST_FAULT", None)
    os.environ.pop("MNN_STRESS_PROG", None)  # what a run suggests is typed as `mnn-stress`


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture
def scenario_file(tmp_path: Path):
    """Write a scenario file from an indented YAML string; returns its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


def run_cli(
    *args: str,
    fault: str | None = None,
    timeout: float = 300,
    check: bool = True,
    trace: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m stress ARGS`` for real (``tests.zygote`` forks it, its imports done);
    ``fault`` sets the test-only fault injection, ``trace`` the folder where workers leave
    their test-only trace (``stress.worker.trace``)."""
    env = dict(os.environ)
    if fault:
        env["MNN_STRESS_TEST_FAULT"] = fault
    if trace:
        trace.mkdir(parents=True, exist_ok=True)
        env["MNN_STRESS_TEST_TRACE"] = str(trace)
    done = zygote.run(["stress", *args], env, REPO, timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def read_iterations(run_dir: Path):
    return ds.dataset(str(run_dir / "iterations"), format="parquet").to_table().to_pandas()


def read_traces(trace_dir: Path, reference: bool = False) -> list[dict]:
    """The workers' test traces: the variants' (by default) or the reference pass's."""
    traces = [json.loads(p.read_text()) for p in sorted(trace_dir.glob("trace-*.json"))]
    return [t for t in traces if t["variant_id"].startswith("reference-") == reference]


def read_events(run_dir: Path):
    """The run's events as the analysis reads them: each death with the native stack gdb
    read after it was written (``native_stack`` events folded in)."""
    from stress.analysis.dataset import events_table

    table = events_table(run_dir)
    return table.to_pandas() if table.num_rows else None  # None: no event at all


def start_run(path: Path, out: Path, *args: str, fault: str | None = None) -> subprocess.Popen:
    """``mnn-stress run`` as a child process the test can signal."""
    env = dict(os.environ)
    if fault:
        env["MNN_STRESS_TEST_FAULT"] = fault
    return zygote.popen(["stress", "run", str(path), "--out", str(out), *args], env, REPO)


def workers_of(coordinator_pid: int) -> list[psutil.Process]:
    """The coordinator's live worker processes; children that exit (or turn zombie) while
    we look are skipped, not an error."""
    found = []
    try:
        children = psutil.Process(coordinator_pid).children()
    except psutil.Error:
        return found
    for child in children:
        try:
            command = " ".join(child.cmdline())
            if "stress.worker" in command and "reference-" not in command:
                found.append(child)
        except psutil.Error:
            continue
    return found


def first_worker(coordinator_pid: int, timeout: float = 60) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = workers_of(coordinator_pid)
        if found:
            return found[0]
        time.sleep(0.02)
    raise AssertionError("no worker started")


def wait_for_iterations(out: Path, at_least: int = 1, timeout: float = 60) -> int:
    """Wait until the run's journal shows ``at_least`` completed iterations in one variant
    (progress lines come every second), instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        best = 0
        journal = out / "journal.jsonl"
        lines = journal.read_text().splitlines() if journal.exists() else []
        for line in lines:
            try:
                best = max(best, json.loads(line).get("completed", 0))
            except ValueError:
                continue
        if best >= at_least:
            return best
        time.sleep(0.05)
    raise AssertionError(f"no variant reached {at_least} iterations in {timeout}s")


def dies_within(pid: int, seconds: float) -> bool:
    """True once the process is gone or a zombie (reparented, not yet reaped by init)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2
CANNOT_DROP = 77  # the exit status of a child that could not give up those powers


def _without_dac_override() -> None:
    """Root reads and writes through permission bits: drop those powers for good (from the
    bounding set, so the command exec'd next has them no more)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            os._exit(CANNOT_DROP)


def run_cli_bound_by_permissions(*args: str) -> subprocess.CompletedProcess:
    """``python -m stress ARGS`` as a user whom file permissions bind (root gives up the
    capabilities that read and write through them); skips where root cannot."""
    done = subprocess.run(
        [sys.executable, "-m", "stress", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
    )
    if done.returncode == CANNOT_DROP:
        pytest.skip("root here cannot give up CAP_DAC_OVERRIDE (no CAP_SETPCAP)")
    return done


def on_a_terminal(
    command: list[str], stream: str = "stderr", width: int | None = None, timeout: float = 60
) -> str:
    """Run ``command`` with its ``stream`` (stdout or stderr) on a pseudo-terminal, ``width``
    columns wide if given (COLUMNS unset: the terminal's own size counts); everything it drew,
    as text without colours. It must exit 0."""
    leader, follower = pty.openpty()
    env = dict(os.environ)
    if width is not None:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
        env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    other = subprocess.PIPE
    streams = (
        {"stdout": follower, "stderr": other}
        if stream == "stdout"
        else {"stdout": subprocess.DEVNULL, "stderr": follower}
    )
    process = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, **streams)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], timeout)
        if not ready:
            process.kill()
            raise AssertionError(f"{command[3:5]} drew nothing for {timeout} s")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the command closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    returncode = process.wait(timeout=timeout)
    os.close(leader)
    said = process.stderr.read() if stream == "stdout" else ""
    assert returncode == 0, said
    text = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)
