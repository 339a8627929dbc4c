"""The world around the worker (issue 14, first keys): ballast, memory-pressure siblings, CPU
hogs and MALLOC_PERTURB_, each really applied to a real worker and a column on every row; the
siblings never outlive their worker."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from stress.worker.siblings import MARKER
from tests.conftest import (
    dies_within,
    first_worker,
    read_iterations,
    run_cli,
    start_run,
    wait_for_iterations,
)

pytestmark = pytest.mark.integration


def siblings_of(worker: psutil.Process, count: int, timeout: float = 30) -> list[psutil.Process]:
    """The worker's sibling processes, once ``count`` of them are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c for c in worker.children() if MARKER in " ".join(c.cmdline())]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{count} siblings did not start")


def test_ballast_is_resident_in_the_worker_and_on_every_row(scenario_file, tmp_path):
    path = scenario_file(
        "name: ballast\nmodel: tiny\nduration: 1s\nmatrix:\n  ballast_mib: [0, 128]\n"
    )
    run_cli("run", str(path), "--out", str(tmp_path / "run"), "--workers", "1")
    rows = read_iterations(tmp_path / "run")
    rss = rows.groupby("ballast_mib").rss_bytes.median()
    assert rss[128] - rss[0] >= 120 << 20
    assert set(rows.ballast_mib) == {0, 128}


def test_siblings_run_beside_the_worker_and_die_with_it(scenario_file, tmp_path):
    """Two pressure siblings and a hog are children of the worker; SIGKILL the worker and
    Linux kills them too; the run's replacement starts its own, and the end of the run
    leaves none."""
    path = scenario_file(
        "name: crowd\nmodel: tiny\nduration: 60s\nmax_crashes: 3\n"
        "matrix:\n  pressure_siblings: [2]\n  pressure_mib: [16]\n  cpu_hogs: [1]\n"
    )
    out = tmp_path / "run"
    coordinator = start_run(path, out, "--workers", "1")
    worker = first_worker(coordinator.pid)
    crowd = siblings_of(worker, 3)
    modes = sorted(c.cmdline()[c.cmdline().index("-c") + 2] for c in crowd)
    assert modes == ["hog", "pressure", "pressure"]
    pressure = [c for c in crowd if "pressure" in c.cmdline()]
    assert _peak_rss(pressure[0], seconds=2.0) >= 16 << 20
    worker.send_signal(signal.SIGKILL)
    assert all(dies_within(c.pid, 5.0) for c in crowd)
    replacement = first_worker(coordinator.pid)
    second = siblings_of(replacement, 3)
    coordinator.send_signal(signal.SIGTERM)
    coordinator.communicate(timeout=60)
    assert all(dies_within(c.pid, 5.0) for c in second)
    assert not [p for p in psutil.process_iter(["cmdline"]) if MARKER in (p.info["cmdline"] or [])]


def _peak_rss(process: psutil.Process, seconds: float) -> int:
    """The largest resident size seen while sampling for ``seconds``."""
    peak, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.01)
    return peak


def test_malloc_perturb_is_in_the_workers_environment_only_when_set(scenario_file, tmp_path):
    path = scenario_file(
        "name: perturbed\nmodel: tiny\nduration: 60s\nmatrix:\n  malloc_perturb: [85]\n"
    )
    coordinator = start_run(path, tmp_path / "run", "--workers", "1")
    worker = first_worker(coordinator.pid)
    assert worker.environ().get("MALLOC_PERTURB_") == "85"
    wait_for_iterations(tmp_path / "run", 5)
    coordinator.send_signal(signal.SIGTERM)
    coordinator.communicate(timeout=60)
    rows = read_iterations(tmp_path / "run")
    assert set(rows.malloc_perturb) == {85} and set(rows.status) == {"ok"}
    plain = scenario_file("name: plain\nmodel: tiny\nduration: 60s\n", name="plain.yaml")
    coordinator = start_run(plain, tmp_path / "plain", "--workers", "1")
    worker = first_worker(coordinator.pid)
    assert "MALLOC_PERTURB_" not in worker.environ()
    coordinator.send_signal(signal.SIGTERM)
    coordinator.communicate(timeout=60)


def test_pressure_siblings_need_a_size_and_a_size_needs_siblings(scenario_file):
    for matrix in ("pressure_siblings: [2]", "pressure_mib: [64]"):
        path = scenario_file(f"name: bad\nmodel: tiny\nmatrix:\n  {matrix}\n")
        done = run_cli("validate", str(path), check=False)
        assert done.returncode == 2
        assert "siblings need a size to allocate" in done.stderr


def test_siblings_die_when_the_coordinator_is_killed(scenario_file, tmp_path):
    path = scenario_file("name: orphans\nmodel: tiny\nduration: 60s\nmatrix:\n  cpu_hogs: [2]\n")
    coordinator = start_run(path, tmp_path / "run", "--workers", "1")
    worker = first_worker(coordinator.pid)
    hogs = siblings_of(worker, 2)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.communicate(timeout=10)
    assert dies_within(worker.pid, 5.0)
    assert all(dies_within(hog.pid, 5.0) for hog in hogs)


def test_every_row_carries_the_machines_available_memory(scenario_file, tmp_path):
    path = scenario_file("name: avail\nmodel: tiny\niterations: 50\n")
    run_cli("run", str(path), "--out", str(tmp_path / "run"))
    rows = read_iterations(tmp_path / "run")
    total = psutil.virtual_memory().total
    assert rows.available_bytes.notna().all()
    assert ((rows.available_bytes > 0) & (rows.available_bytes < total)).all()
