"""The worker side's own contract: it must run under an interpreter with only MNN and numpy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from stress import factors
from stress.factors import Factor
from stress.models.resolve import resolve_model
from stress.protocol import InputPlan, Job
from stress.stages import Launch
from stress.workerproc import WorkerProcess

from .conftest import REPO

HARNESS_ONLY = {"pyarrow", "pydantic", "ruamel", "click", "rich", "psutil", "xxhash", "pandas"}


def test_worker_code_imports_only_stdlib_numpy_and_mnn():
    probe = (
        "import sys\n"
        "import stress.worker, stress.drivers.session, stress.drivers.module, stress.inputs\n"
        "import stress.factors, stress.protocol, stress.ring, stress.faults, stress.dtypes\n"
        "import stress.stages, stress.trace\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HARNESS_ONLY)!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


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
    worker = WorkerProcess(job, tmp_path / "worker.log", 1 << 20)
    try:
        environment = psutil.Process(worker.pid).environ()
    finally:
        worker.process.kill()
        worker.process.wait(timeout=60)
        worker.close()
    assert environment["MNN_STRESS_LAUNCH_PROBE"] == "seen"
