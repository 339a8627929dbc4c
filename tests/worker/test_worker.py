"""The worker side's own contract: it must run under an interpreter with only MNN and numpy."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

from stress import factors
from stress.contract.protocol import InputPlan, Job
from stress.contract.stages import Launch
from stress.coordinator.workers.handle import WorkerProcess
from stress.factors.factor import Factor
from stress.models.resolve import resolve_model
from stress.records.rundir import RunLayout
from tests.conftest import REPO

HARNESS_ONLY = {"pyarrow", "pydantic", "ruamel", "click", "rich", "psutil", "xxhash", "pandas"}


def test_worker_code_imports_only_stdlib_numpy_and_mnn():
    """Everything under stress/worker/ and stress/contract/, and the factor registry."""
    probe = (
        "import importlib, pkgutil, sys\n"
        "import stress.contract, stress.factors, stress.worker\n"
        "for package in (stress.worker, stress.contract, stress.factors):\n"
        "    for found in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "        if not found.name.endswith('__main__'):\n"
        "            importlib.import_module(found.name)\n"
        "print(len([m for m in sys.modules if m.startswith('stress.')]))\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HARNESS_ONLY)!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    *_, imported, harness_only = done.stdout.strip().splitlines()
    assert harness_only == "[]" and int(imported) >= 20  # the walk really imported the tree


def _environment_after_exec(process: psutil.Process) -> dict[str, str]:
    """The worker's environment once it runs the worker: read between its fork and its exec,
    /proc shows the coordinator's (seen on a loaded machine)."""
    deadline = time.monotonic() + 30
    while "stress.worker" not in " ".join(process.cmdline()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return process.environ()


def test_a_factors_launch_hook_reaches_the_worker_process(tmp_path, monkeypatch):
    """The launch stage: a factor's hook sets the environment of the real worker process."""

    def launch(value: str, into: Launch) -> None:
        into.env["MNN_STRESS_LAUNCH_PROBE"] = value

    probe = Factor("launch_probe", str, "", "test-only", launch=launch)
    monkeypatch.setitem(factors.REGISTRY, probe.name, probe)
    model = resolve_model("tiny", Path("."))
    job = Job(
        run_id="r",
        scenario="s",
        variant_id="v",
        worker_id=0,
        model_path=model.path,
        inputs=[InputPlan(t.name, list(t.shape), t.dtype) for t in model.inputs],
        output_names=[t.name for t in model.outputs],
        params={**factors.defaults(), "launch_probe": "seen"},
        duration_s=60.0,  # alive until killed below
    )
    worker = WorkerProcess(job, RunLayout(tmp_path), 1 << 20)
    try:
        environment = _environment_after_exec(psutil.Process(worker.pid))
    finally:
        worker.process.kill()
        worker.process.wait(timeout=60)
        worker.close()
    assert environment["MNN_STRESS_LAUNCH_PROBE"] == "seen"
