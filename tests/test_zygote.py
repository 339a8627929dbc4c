"""The tests' zygote (``tests/zygote.py``) starts a command as a fresh interpreter would: its
argv, environment, working directory, streams and exit status are the test's, and an
environment that changes how an interpreter starts gets a fresh one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests import zygote
from tests.conftest import REPO


def test_a_forked_command_has_the_tests_argv_environment_directory_and_status(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nmodel: tiny\nmatrix: {api: [sesion]}\n")
    env = {**os.environ, "MNN_STRESS_PROG": "./run.sh mnn-stress", "COLUMNS": "80"}
    process = zygote.popen(["stress", "validate", "bad.yaml"], env, tmp_path)
    assert isinstance(process, zygote.ZygoteProcess)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    assert "bad.yaml" in stdout + stderr and "sesion" in stdout + stderr  # read from tmp_path
    forked = zygote.run(["stress", "--version"], dict(os.environ), REPO, 60)
    fresh = subprocess.run(
        [sys.executable, "-m", "stress", "--version"], capture_output=True, text=True, cwd=REPO
    )
    assert forked.returncode == fresh.returncode == 0
    assert forked.stdout == fresh.stdout  # click names the program from __main__, as -m sets it


def test_a_forked_command_is_a_process_of_its_own_that_signals_reach(tmp_path):
    (tmp_path / "long.yaml").write_text("name: long\nmodel: tiny\nduration: 60s\n")
    env = dict(os.environ)
    process = zygote.popen(["stress", "run", "long.yaml", "--out", "run"], env, tmp_path)
    assert isinstance(process, zygote.ZygoteProcess) and process.pid != os.getpid()
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "manifest.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    process.communicate(timeout=30)


def test_an_environment_that_changes_the_interpreters_start_gets_a_fresh_one(tmp_path):
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    process = zygote.popen(["stress", "--version"], env, REPO)
    assert isinstance(process, subprocess.Popen)
    process.communicate(timeout=60)
    assert process.returncode == 0
