"""An independent reference: where a scenario's model came from ONNX, ONNX Runtime's outputs on
the same inputs, computed in a process of its own (no MNN in it) during the reference pass.

An engine can be consistently wrong, bit-identical on every run, which no repetition reveals;
another engine on the same graph can. ONNX Runtime is an optional extra (``pip install
'.[reference]'``; ``./run.sh`` installs it): without it the manifest says so and nothing else
changes. Files: ``RUN_DIR/reference/onnxruntime/<scenario>.npz`` (outputs by name) and
``<scenario>-inputs.npz``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from stress.scenario import LoadedScenario

TIMEOUT_S = 600.0
_MISSING = 3  # the child's exit status when onnxruntime is not installed


def onnx_path(scenario: LoadedScenario) -> Path | None:
    """The ONNX file a scenario's model was converted from, if it was."""
    if scenario.model.source != "onnx":
        return None
    return (scenario.path.parent / scenario.spec.model).absolute()


def run_onnxruntime(run_dir: Path, scenarios: list[LoadedScenario]) -> dict[str, str]:
    """Per ONNX scenario: ``done``, ``not installed`` or why it failed."""
    from stress.coordinator.jobs import input_plans
    from stress.records.rundir import RunLayout
    from stress.worker.inputs import make_inputs

    found = {}
    folder = RunLayout(run_dir).onnxruntime
    for scenario in scenarios:
        model = onnx_path(scenario)
        if model is None:
            continue
        folder.mkdir(parents=True, exist_ok=True)
        name = scenario.spec.name
        plans = input_plans(scenario)
        inputs = folder / f"{name}-inputs.npz"
        arrays = make_inputs(plans, scenario.spec.seed)
        try:
            np.savez(inputs, **{plan.name: array for plan, array in zip(plans, arrays)})
        except OSError as exc:  # a full disk: the run's own writes will say so
            found[name] = f"failed: {exc}"
            continue
        found[name] = _child(model, inputs, folder / f"{name}.npz")
    return found


def _child(model: Path, inputs: Path, out: Path) -> str:
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "stress.coordinator.onnx_reference",
                str(model),
                str(inputs),
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"failed: no answer in {TIMEOUT_S:.0f} s"
    if done.returncode == _MISSING:
        return (
            "not installed: the independent check is skipped (pip install "
            "'mnn-stress[reference]', or onnxruntime itself; ./run.sh installs it)"
        )
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"failed (exit {done.returncode}): {tail}"
    return "done"


def main(model: str, inputs: str, out: str) -> int:
    """In the child: one single-threaded CPU session, the inputs by name, outputs by name."""
    try:
        import onnxruntime
    except ImportError:
        return _MISSING
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    with np.load(inputs) as data:
        feeds = {name: data[name] for name in data.files}
    names = [o.name for o in session.get_outputs()]
    np.savez(out, **dict(zip(names, session.run(names, feeds))))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
