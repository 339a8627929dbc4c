"""A coordinator stopped (SIGSTOP, Ctrl-Z, a debugger) while its workers go on: their
variants' time runs out without it, so the run says so in run.log, the manifest and the
summary, instead of silently counting fewer iterations."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from stress.coordinator.loop import PAUSE_S
from tests.conftest import run_cli, start_run, wait_for_iterations

pytestmark = pytest.mark.integration


def test_a_stopped_coordinator_says_so_in_the_log_manifest_and_summary(scenario_file, tmp_path):
    stopped_s = PAUSE_S + 1.5
    path, out = scenario_file("name: paused\nmodel: tiny\nduration: 9s\n"), tmp_path / "run"
    run = start_run(path, out, "--workers", "1", "--no-adaptive")
    wait_for_iterations(out, at_least=100)
    os.kill(run.pid, signal.SIGSTOP)
    time.sleep(stopped_s)
    os.kill(run.pid, signal.SIGCONT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr

    pauses = json.loads((out / "manifest.json").read_text())["pauses"]
    assert len(pauses) == 1, pauses
    assert stopped_s - 0.5 <= pauses[0]["seconds"] <= stopped_s + 2.0
    log = (out / "run.log").read_text()
    assert f"the coordinator did not run for {pauses[0]['seconds']:.1f} s" in log
    assert "its 1 workers went on meanwhile" in stderr
    summary = run_cli("summary", str(out)).stdout
    assert f"the coordinator was paused 1 time(s), {pauses[0]['seconds']:.1f} s in all" in summary
