"""A worker's environment as the coordinator starts it."""

from __future__ import annotations

import os
import signal

import pytest

from tests import zygote
from tests.conftest import REPO, first_worker, wait_for_iterations


def _worker_blas_threads(scenario_file, tmp_path, **env: str) -> str | None:
    """OPENBLAS_NUM_THREADS in a running worker's environment, the coordinator's ``env``
    added to the test's."""
    path = scenario_file("name: blas\nmodel: tiny\nduration: 60s\n")
    out = tmp_path / "run"
    command = ["stress", "run", str(path), "--out", str(out), "--no-reference"]
    run = zygote.popen(command, {**os.environ, **env}, REPO)
    try:
        wait_for_iterations(out, at_least=1)
        return first_worker(run.pid).environ().get("OPENBLAS_NUM_THREADS")
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)


@pytest.mark.integration
def test_a_worker_gets_one_blas_thread_unless_the_user_says_otherwise(
    scenario_file, tmp_path, monkeypatch
):
    """numpy's OpenBLAS would start a spinning thread per core in every worker, for nothing."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)  # as a user's shell has it
    assert _worker_blas_threads(scenario_file, tmp_path / "default") == "1"
    mine = _worker_blas_threads(scenario_file, tmp_path / "mine", OPENBLAS_NUM_THREADS="3")
    assert mine == "3"
