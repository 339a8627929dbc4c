"""ONNX Runtime as an independent reference: MNN's clean outputs of a model converted from
ONNX, graded against ONNX Runtime's on the same inputs, in a process without MNN."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from tests.conftest import REPO, run_cli
from tests.models.test_models import _onnx_model

pytestmark = pytest.mark.integration

SCENARIO = "name: {name}\nmodel: {model}\niterations: 5\nmatrix:\n  api: [session, module]\n"


def run_onnx(scenario_file, tmp_path, model: str, env: dict | None = None):
    path = scenario_file(SCENARIO.format(name="onnx", model=model))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "stress", "run", str(path), "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    return summary["references"]["onnx"]["onnxruntime"], out


def test_a_model_both_engines_agree_on_is_graded_close(scenario_file, tmp_path):
    _onnx_model(tmp_path / "net.onnx")
    found, out = run_onnx(scenario_file, tmp_path, "net.onnx")
    assert found["status"] == "done"
    (output,) = found["outputs"].values()
    assert output["grade"] in ("exact", "close") and output["elements"] > 0
    assert (out / "reference" / "onnxruntime" / "onnx-inputs.npz").is_file()
    assert run_cli("report", str(out), check=False).returncode == 0


def test_a_real_model_mnn_converts_wrongly_is_caught_though_mnn_is_consistent(
    scenario_file, tmp_path
):
    """The onnx wheel's squeezenet (opset 9): MNN 3.6.1 converts its Softmax, which has no
    axis attribute, over the last axis instead of axis 1, so every MNN output is 1.0 where
    ONNX Runtime gives 0.001: bit-identical run to run, and wrong."""
    light = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
    shutil.copy(light, tmp_path / "squeezenet.onnx")
    found, out = run_onnx(scenario_file, tmp_path, "squeezenet.onnx")
    output = found["outputs"]["softmaxout_1"]
    assert output["grade"] == "mismatch" and output["differing"] == 1000
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    variants = summary["variants"]
    assert {v["distinct_outputs"] for v in variants} == {1}  # consistent with itself
    assert {v["grades"]["exact"] for v in variants} == {v["iterations"] for v in variants}
    # ...and as wrong as its reference: every variant says so, not only the references block
    assert {v["verdict"] for v in variants} == {"ORT_MISMATCH"}
    assert {v["onnxruntime_disagrees"] for v in variants} == {True}
    done = run_cli("report", str(out), check=False)
    assert done.returncode == 1
    assert "softmaxout_1 against ONNX Runtime: mismatch" in done.stdout
    assert done.stdout.splitlines()[1] == f"{len(variants)} ORT_MISMATCH"  # at the top
    assert done.stdout.count("ONNX Runtime disagrees with that reference") == len(variants)


def test_without_onnxruntime_the_run_says_so_and_carries_on(scenario_file, tmp_path):
    _onnx_model(tmp_path / "net.onnx")
    blocker = tmp_path / "no-ort" / "onnxruntime"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed here')\n")
    env = dict(os.environ, PYTHONPATH=str(blocker.parent))
    found, out = run_onnx(scenario_file, tmp_path, "net.onnx", env)
    assert found["status"].startswith("not installed") and found["outputs"] == {}
    assert run_cli("report", str(out), check=False).returncode == 0
