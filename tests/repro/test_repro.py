"""``mnn-stress repro``: a standalone script per variant that recreates it with MNN and numpy
only, checks for what the run saw, and is run K times in fresh processes."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

SCENARIO = """
    name: repro
    model: tiny
    iterations: 10
    max_crashes: 0
    matrix:
      api: [session, module]
      threads: [1, 2]
      sharing: [own, interpreter, module]
    exclude:
      - {{threads: 1, sharing: interpreter}}
      - {{threads: 1, sharing: module}}
      - {{api: session, sharing: module}}
      - {{api: module, sharing: interpreter}}
"""


def run(scenario_file, tmp_path, fault=None):
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(SCENARIO.format())), "--out", str(out), fault=fault)
    return out


def variant_ids(out) -> dict[str, str]:
    import json

    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    return {v["label"]: v["variant_id"] for v in summary["variants"]}


def repro(out, vid, runs=2):
    return run_cli("repro", str(out), vid, "--runs", str(runs)).stdout


def test_a_clean_variant_does_not_reproduce_anything(scenario_file, tmp_path):
    """No false alarm: the script's own calls give the reference's bytes on both APIs, with
    threads sharing an Interpreter or a module."""
    out = run(scenario_file, tmp_path)
    for label, vid in variant_ids(out).items():
        shown = repro(out, vid)
        assert "reproduced in 0 of 2 fresh runs" in shown, (label, shown)
        assert "not seen, not seen" in shown


def test_a_deterministic_mismatch_reproduces_in_fresh_processes(scenario_file, tmp_path):
    out = run(scenario_file, tmp_path, fault="perturb@4+?api=module")
    vid = variant_ids(out)["api=module threads=1 sharing=own"]
    shown = repro(out, vid, runs=3)
    assert "reproduced in 3 of 3 fresh runs (looked for mismatch, inconsistent)" in shown
    script = out / "repro" / f"{vid}.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 1 and "REPRODUCED" in done.stdout
    assert "'mismatch': 6" in done.stdout  # iterations 4..9 of 10, as in the run


def test_a_crash_reproduces_as_the_same_signal(scenario_file, tmp_path):
    out = run(scenario_file, tmp_path, fault="segv@3?api=session")
    vid = variant_ids(out)["api=session threads=1 sharing=own"]
    shown = repro(out, vid)
    assert "reproduced in 2 of 2 fresh runs" in shown and "signal 11, signal 11" in shown


def test_the_script_needs_only_mnn_numpy_and_the_standard_library(scenario_file, tmp_path):
    out = run(scenario_file, tmp_path)
    vid = variant_ids(out)["api=session threads=2 sharing=interpreter"]
    run_cli("repro", str(out), vid, "--runs", "0", "--out", str(tmp_path / "r.py"))
    tree = ast.parse((tmp_path / "r.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported <= {"base64", "io", "sys", "threading", "zlib", "numpy", "MNN", "ctypes", "os"}
    assert imported >= {"numpy", "MNN"}


def test_an_unknown_variant_is_refused_with_the_known_ones(scenario_file, tmp_path):
    out = run(scenario_file, tmp_path)
    done = run_cli("repro", str(out), "vnope", check=False)
    assert done.returncode == 2 and "no variant 'vnope'" in done.stderr
    assert "its variants include" in done.stderr


def test_a_refused_misuse_reproduces_as_a_raise_while_setting_up(scenario_file, tmp_path):
    """misuse=unknown_output asks for an output the model lacks: the run refused the variant
    when its worker set up; the script asks for the same names and raises in the same place."""
    path = scenario_file(
        "name: refused\nmodel: tiny\niterations: 5\nmatrix:\n  misuse: [unknown_output]\n"
    )
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), check=False)  # nothing ran: exit 3
    (vid,) = variant_ids(out).values()
    shown = repro(out, vid)
    assert "reproduced in 2 of 2 fresh runs (looked for setup_error)" in shown
    assert "not recreated" not in shown


@pytest.mark.parametrize("dtype", ["float32", "int32", "uint8"])
@pytest.mark.parametrize(
    "distribution", ["normal", "uniform", "zeros", "ones", "large", "denormal"]
)
def test_the_scripts_inputs_are_the_runs_bytes(distribution, dtype):
    """The script restates the input generator (it must stand alone): it must give the
    worker's bytes for every distribution and dtype, or every repro would grade mismatch."""
    from stress.contract.protocol import InputPlan
    from stress.repro import script
    from stress.worker.inputs import make_input

    plan = InputPlan("x", [2, 3, 5], dtype, distribution, 0.5 if distribution == "normal" else 1.0)
    spec = {**vars(plan)}
    expected = make_input(plan, 42)
    found = script.make_input(spec, 42)
    assert found.dtype == expected.dtype and found.tobytes() == expected.tobytes()
