"""Stopping a run at any size and any moment: Ctrl-C with thousands of variants, a second
Ctrl-C, Ctrl-C while validating, and a --duration too short for the matrix."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, dies_within, first_worker, run_cli, start_run, wait_for_iterations

pytestmark = pytest.mark.integration

WIDE = """
name: wide{index}
model: tiny
iterations: 1000000
matrix:
  api: [session, module]
  precision: [normal, high, low]
  num_thread: [{threads}]
"""


def wide_scenarios(directory: Path, files: int) -> Path:
    """``files`` scenarios of 384 variants each (2 APIs x 3 precisions x 64 thread counts)."""
    directory.mkdir()
    threads = ", ".join(str(n) for n in range(1, 65))
    for index in range(files):
        (directory / f"wide{index}.yaml").write_text(WIDE.format(index=index, threads=threads))
    return directory


def test_ctrl_c_stops_within_seconds_with_thousands_of_variants(tmp_path):
    scenarios = wide_scenarios(tmp_path / "scenarios", 8)  # 3072 variants
    out = tmp_path / "run"
    coordinator = start_run(scenarios, out, "--workers", "2")
    wait_for_iterations(out, 1, timeout=120)
    coordinator.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    stdout, stderr = coordinator.communicate(timeout=120)
    elapsed = time.monotonic() - signalled
    assert coordinator.returncode == 130, stderr
    assert elapsed < 15, f"took {elapsed:.1f}s to stop"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    statuses = [v["status"] for v in manifest["variants"].values()]
    assert len(statuses) == 3072 and statuses.count("skipped") >= 3070
    assert set(statuses) <= {"interrupted", "skipped", "done"}
    assert f"to go on with it: mnn-stress run --resume {out}\n" in stdout  # pasted as it is
    assert re.search(
        r"^3,0[67]\d variant\(s\) not started \(SKIPPED\), not listed: wide0 ", stdout, re.M
    )


def test_duration_too_short_for_the_matrix_is_refused_before_running(tmp_path):
    scenarios = wide_scenarios(tmp_path / "scenarios", 8)
    out = tmp_path / "run"
    done = run_cli(
        "run",
        str(scenarios),
        "--out",
        str(out),
        "--workers",
        "2",
        "--duration",
        "30s",
        check=False,
    )
    assert done.returncode == 2
    assert "3072 variants" in done.stderr and "--duration 1536s or more" in done.stderr
    assert not out.exists()


def test_second_ctrl_c_kills_a_worker_that_will_not_stop(scenario_file, tmp_path):
    path = scenario_file("name: stuck\nmodel: tiny\niterations: 100\ntimeout: 60s\n")
    out = tmp_path / "run"
    coordinator = start_run(path, out, "--workers", "1", fault="hang@5")
    worker = first_worker(coordinator.pid)
    wait_for_iterations(out, 5)  # iterations 0-4 are done; the worker hangs in 5
    coordinator.send_signal(signal.SIGINT)  # asks the worker to stop: it cannot
    time.sleep(0.5)
    assert coordinator.poll() is None  # still waiting out the grace period
    coordinator.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    coordinator.communicate(timeout=60)
    assert time.monotonic() - signalled < 3
    assert coordinator.returncode == 130
    assert dies_within(worker.pid, 1.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert [v["status"] for v in manifest["variants"].values()] == ["interrupted"]


def _child_running(pid: int, marker: str, timeout: float = 60) -> psutil.Process | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for child in psutil.Process(pid).children():
                if marker in " ".join(child.cmdline()):
                    return child
        except psutil.Error:
            return None
        time.sleep(0.005)
    return None


def test_ctrl_c_while_validating_is_a_clean_exit(scenario_file, tmp_path):
    path = scenario_file("name: fresh\nmodel: deep\niterations: 2\n")
    env = dict(os.environ, MNN_STRESS_CACHE=str(tmp_path / "cache"))  # the model must be built
    validate = subprocess.Popen(
        [sys.executable, "-m", "stress", "validate", str(path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a parent that ignores SIGINT (a background job, a test runner)
        # would pass that on, and Python would ignore Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    probe = _child_running(validate.pid, "stress.models.probe")  # building the model
    assert probe is not None, "validation never started the model probe"
    validate.send_signal(signal.SIGINT)
    _, stderr = validate.communicate(timeout=60)
    assert validate.returncode == 130, stderr
    assert "interrupted; no run was started" in stderr
    assert "Aborted" not in stderr and "Traceback" not in stderr
