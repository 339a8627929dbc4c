"""``mnn-stress repro``: a standalone script per variant that recreates it with MNN and numpy
only, checks for what the run saw, and is run K times in fresh processes."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy
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


def run(folder: Path, fault=None) -> Path:
    path = folder / "repro.yaml"
    path.write_text(textwrap.dedent(SCENARIO.format()).lstrip())
    out = folder / "run"
    run_cli("run", str(path), "--out", str(out), fault=fault)
    return out


# Two runs of SCENARIO, each read by three tests below: the tests only write repro scripts
# (under the run's repro/, rewritten by every `repro`, or elsewhere) and never change what the
# run recorded, so one run serves them as well as a run each did.
@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    return run(tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def perturbed_run(tmp_path_factory) -> Path:
    """The module API's outputs perturbed from iteration 4 on."""
    return run(tmp_path_factory.mktemp("perturbed"), fault="perturb@4+?api=module")


def variant_ids(out) -> dict[str, str]:
    import json

    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    return {v["label"]: v["variant_id"] for v in summary["variants"]}


def repro(out, vid, runs=2):
    return run_cli("repro", str(out), vid, "--runs", str(runs)).stdout


def repro_each(out, vids: list[str], runs: int) -> list[str]:
    """``repro`` of each variant, one after the other."""
    return [repro(out, vid, runs) for vid in vids]


def test_a_clean_variant_does_not_reproduce_anything(clean_run):
    """No false alarm: the script's own calls give the reference's bytes on both APIs, with
    threads sharing an Interpreter or a module."""
    out = clean_run
    ids = variant_ids(out)
    for label, shown in zip(ids, repro_each(out, list(ids.values()), 2), strict=True):
        assert "reproduced in 0 of 2 fresh runs" in shown, (label, shown)
        assert "not seen, not seen" in shown


def test_a_deterministic_mismatch_reproduces_in_fresh_processes(perturbed_run):
    out = perturbed_run
    vid = variant_ids(out)["api=module threads=1 sharing=own"]
    shown = repro(out, vid, runs=3)
    assert "reproduced in 3 of 3 fresh runs (looked for mismatch, inconsistent)" in shown
    script = out / "repro" / f"{vid}.py"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 1 and "REPRODUCED" in done.stdout
    assert "'mismatch': 6" in done.stdout  # iterations 4..9 of 10, as in the run


def test_a_crash_reproduces_as_the_same_signal(tmp_path):
    out = run(tmp_path, fault="segv@3?api=session")
    vid = variant_ids(out)["api=session threads=1 sharing=own"]
    shown = repro(out, vid)
    assert "reproduced in 2 of 2 fresh runs" in shown and "signal 11, signal 11" in shown


def test_the_script_needs_only_mnn_numpy_and_the_standard_library(clean_run, tmp_path):
    out = clean_run
    vid = variant_ids(out)["api=session threads=2 sharing=interpreter"]
    run_cli("repro", str(out), vid, "--runs", "0", "--out", str(tmp_path / "r.py"))
    tree = ast.parse((tmp_path / "r.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    standard = {"base64", "contextlib", "hashlib", "io", "sys", "threading", "zlib", "ctypes", "os"}
    standard |= {"traceback"}
    assert imported <= standard | {"numpy", "MNN"}
    assert imported >= {"numpy", "MNN"}


def bare_venv(folder: Path) -> Path:
    """A venv holding MNN and numpy alone (linked from ours: no download, no pip); its
    python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    ours = Path(numpy.__file__).parents[1]
    (theirs,) = (folder / "lib").glob("python3*/site-packages")
    for name in (
        "MNN",
        "mnn.libs",
        "numpy",
        "numpy.libs",
        *[p.name for p in ours.glob("_mnncengine*")],
    ):
        if (ours / name).exists():
            (theirs / name).symlink_to(ours / name)
    return folder / "bin" / "python"


def test_a_script_moved_elsewhere_runs_in_a_bare_venv_and_a_missing_model_is_said(
    perturbed_run, tmp_path
):
    """The model lies beside the script under a name relative to it: the folder moved (as
    attached to an issue upstream) still reproduces, with nothing but MNN and numpy. Without
    the model the script says so plainly, not "MNN raised: Invalid model file"."""
    out = perturbed_run
    vid = variant_ids(out)["api=module threads=1 sharing=own"]
    written = tmp_path / "written"
    run_cli("repro", str(out), vid, "--runs", "0", "--out", str(written / "r.py"))
    (model,) = [p for p in written.iterdir() if p.suffix == ".mnn"]
    assert str(out) not in (written / "r.py").read_text() and "/" not in model.name
    moved = shutil.move(str(written), str(tmp_path / "elsewhere" / "attached"))
    python = bare_venv(tmp_path / "bare")
    assert subprocess.run([str(python), "-c", "import onnx"], capture_output=True).returncode
    done = subprocess.run(
        [str(python), str(Path(moved) / "r.py")], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1 and "REPRODUCED" in done.stdout, done.stdout + done.stderr
    (Path(moved) / model.name).unlink()
    done = subprocess.run([str(python), str(Path(moved) / "r.py")], capture_output=True, text=True)
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"file not found: {Path(moved) / model.name} (keep it beside this script)" in done.stdout


def test_a_variant_whose_cause_the_script_cannot_recreate_is_not_run_for_a_false_no(
    scenario_file, tmp_path
):
    """output_lifetime=after_release is not in the script: running it would print "not seen",
    which reads as flaky. The script is written; running it needs --anyway."""
    path = scenario_file(
        "name: views\nmodel: tiny\niterations: 5\nmatrix:\n  output_lifetime: [after_release]\n"
    )
    out = tmp_path / "run"
    ran = run_cli("run", str(path), "--out", str(out))
    assert "VIEW_CHANGED" in ran.stdout and "mnn-stress repro" not in ran.stdout  # not suggested
    (vid,) = variant_ids(out).values()
    done = run_cli("repro", str(out), vid, "--runs", "1", check=False)
    assert done.returncode == 2 and (out / "repro" / f"{vid}.py").is_file()
    assert (
        "cannot recreate output_lifetime=after_release" in done.stderr and "--anyway" in done.stderr
    )
    anyway = run_cli("repro", str(out), vid, "--runs", "1", "--anyway")
    assert "not recreated by the script: output_lifetime=after_release" in anyway.stdout
    assert "reproduced in 0 of 1 fresh runs" in anyway.stdout


def test_an_unknown_variant_is_refused_with_the_known_ones(clean_run):
    out = clean_run
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


def verdicts(out) -> dict[str, tuple[str, str]]:
    """label: (variant id, verdict)."""
    import json

    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    return {v["label"]: (v["variant_id"], v["verdict"]) for v in summary["variants"]}


MISUSES = """
    name: misuse
    model: three_input
    iterations: 5
    max_crashes: 0
    matrix:
      api: [session, module]
      misuse: [missing_input, extra_input, wrong_rank, wrong_dtype, from_numpy, bare_ndarray,
               untyped_tensor]
    exclude:
      - {api: module, misuse: [from_numpy, untyped_tensor]}
"""


def test_each_misuse_reproduces_what_the_run_saw(scenario_file, tmp_path):
    """The script makes the run's wrong calls: every misuse that found something reproduces it
    in a fresh process, as the same kind (a raise, an rc, wrong or changing outputs, the
    signal), and a harmless one (on MNN 3.6.1: Session wrong_rank, Module extra_input) finds
    nothing. Fed rightly, the script would see nothing but the crashes' absence."""
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(MISUSES)), "--out", str(out), check=False)
    found = verdicts(out)
    assert {verdict for _, verdict in found.values()} >= {"ok", "FAILED", "QUARANTINED"}
    shown_each = repro_each(out, [vid for vid, _ in found.values()], runs=1)
    for (label, (_, verdict)), shown in zip(found.items(), shown_each, strict=True):
        assert "not recreated" not in shown, (label, shown)
        if verdict == "ok":
            assert "reproduced in 0 of 1 fresh runs" in shown, (label, shown)
        elif verdict == "QUARANTINED":  # the run's worker died of SIGSEGV
            assert "reproduced in 1 of 1 fresh runs (looked for crash): signal 11" in shown
        else:
            assert "reproduced in 1 of 1 fresh runs" in shown, (label, verdict, shown)
            assert shown.rstrip().endswith(": reproduced"), (label, shown)


LOCKS = """
    name: lock
    model: three_input
    iterations: 20
    max_crashes: 0
    matrix:
      threads: [2]
      sharing: [session]
      caller_lock: [none, setup, all]
"""


def test_the_callers_lock_is_held_as_the_run_held_it(scenario_file, tmp_path):
    """Two threads sharing one session race (the run: inconsistent outputs, unlocked or with
    the set-up lock alone); with every iteration under the caller's lock they do not. The
    script holds the same lock: the serialised control reproduces nothing in 3 fresh runs,
    where without the lock it found a difference in every run (5 of 5, measured)."""
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(LOCKS)), "--out", str(out), check=False)
    found = verdicts(out)
    vid, verdict = found["caller_lock=all"]
    assert verdict == "ok"
    shown = repro(out, vid, runs=3)
    assert "reproduced in 0 of 3 fresh runs" in shown and "not recreated" not in shown
    for label in ("caller_lock=none", "caller_lock=setup"):
        vid, verdict = found[label]
        assert verdict != "ok", label
        shown = repro(out, vid, runs=2)
        # the race shows as differences, or (seen once in CI) as SIGSEGV in every fresh run
        raced = "reproduced in 0 of" not in shown or shown.count("signal 11") == 2
        assert raced and "not recreated" not in shown, shown


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


def peak_rss_mib(script: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``script`` in a fresh process: its own peak RSS in MiB (``os.wait4``), and how it
    ended."""
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    printed = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, subprocess.CompletedProcess(child.args, code, printed)


def test_the_scripts_memory_stays_flat_over_400_iterations_of_a_4_mib_output(tmp_path):
    """Each iteration's outputs are checked as it ends and dropped: two threads of 200
    iterations of a 4 MiB output peak at about 130 MiB on both APIs, and count what they saw
    (kept, the outputs took 1.7 GiB). Peak RSS does not depend on the machine's load: a bound
    at 300 MiB still catches a quarter of the outputs kept."""
    import MNN.expr as F

    x = F.placeholder([1, 1, 1024, 1024], F.NCHW, F.float)
    x.name = "x"
    y = F.relu(x)
    y.name = "y"
    F.save([y], str(tmp_path / "out4.mnn"))
    scenario = tmp_path / "big.yaml"
    scenario.write_text(
        "name: big\nmodel: out4.mnn\niterations: 3\ninputs: {x: {distribution: ones}}\n"
        "matrix:\n  api: [session, module]\n  threads: [2]\n"
    )
    out = tmp_path / "run"
    run_cli("run", str(scenario), "--out", str(out), fault="perturb@50+", check=False)
    for label, vid in variant_ids(out).items():
        script = tmp_path / label / "r.py"
        run_cli("repro", str(out), vid, "--runs", "0", "--iterations", "200", "--out", str(script))
        peak, done = peak_rss_mib(script)
        assert done.returncode == 1 and "REPRODUCED" in done.stdout, (label, done.stdout)
        assert "'iterations': 400," in done.stdout and "'mismatch': 300," in done.stdout
        assert "'inconsistent': 1," in done.stdout
        assert peak < 300, (label, peak)


def test_the_script_keeps_a_digest_of_each_distinct_output_not_its_bytes(monkeypatch):
    """Where every iteration's output differs (threads racing on one session), the script keeps
    a digest of each, not the output: 200 distinct 1 MiB outputs are counted with a few MiB
    traced at most (kept, they take 200 MiB; tracemalloc sees numpy's buffers). Bytes seen
    again count again without being judged again."""
    import tracemalloc

    from stress.repro import script

    tolerance = {"statistic": "mnn", "atol": 0.0, "rtol": 0.01}
    monkeypatch.setattr(script, "SETTINGS", {"outputs": ["y"], "tolerance": tolerance})
    tally = script.Tally({"y": numpy.zeros(1 << 18, numpy.float32)})
    nan = numpy.full(1 << 18, numpy.nan, numpy.float32)
    tracemalloc.start()
    try:
        for value in range(200):
            tally.add("ok", [numpy.full(1 << 18, value, numpy.float32)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for status, outputs in [("ok", [nan]), ("ok", [nan.copy()]), ("invalid", [nan]), ("error", [])]:
        tally.add(status, outputs)
    counts = {"iterations": 204, "invalid": 1, "error": 1, "non_finite": 2}
    assert script.found([tally]) == {**counts, "inconsistent": 200, "mismatch": 201, "leak": 0}
    assert peak < 32 << 20, peak


def test_the_docs_name_every_factor_the_script_does_not_recreate():
    """The analysis page's list is written by hand: it must follow ``RECREATED``."""
    import re

    from stress.factors import REGISTRY
    from stress.repro.make import RECREATED

    page = (Path(__file__).parents[2] / "docs" / "analysis.md").read_text()
    sentence = page[page.index("factors it does not recreate (") :].split(")", 1)[0]
    named = set(re.findall(r"`(\w+)`", sentence))
    assert named == {name for name in REGISTRY if name not in RECREATED}


def test_a_leak_reproduces_and_a_variant_that_does_not_leak_does_not(scenario_file, tmp_path):
    """lifecycle=session_per_iteration grows MNN's memory (sessions on createRuntime's runtime
    with saveTensors, as the harness makes them): LEAK, and the script sees its own resident
    memory grow by the run's rule; the same model reusing its session stays flat."""
    path = scenario_file(
        "name: leak\nmodel: tiny\niterations: 3000\n"
        "matrix:\n  lifecycle: [session_per_iteration, reuse]\n"
    )
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out))
    ids = variant_ids(out)
    leaking, flat = ids["lifecycle=session_per_iteration"], ids["lifecycle=reuse"]
    shown = repro(out, leaking, runs=1)  # over the run's 3,000 iterations, as it grew
    assert "reproduced in 1 of 1 fresh runs (looked for leak)" in shown
    fewer = run_cli("repro", str(out), leaking, "--runs", "0", "--iterations", "300").stdout
    assert "a leak shows over iterations: the run saw it over 3,000 per thread" in fewer
    script = out / "repro" / f"{flat}.py"
    run_cli("repro", str(out), flat, "--runs", "0")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert "'leak': 0" in done.stdout and "resident memory grew" in done.stdout


def test_a_disagreement_with_onnx_runtime_is_not_looked_for_by_a_script_that_cannot_see_it(
    scenario_file, tmp_path
):
    """The script compares with MNN's clean reference, which an ORT_MISMATCH variant matches:
    it would say "not seen", read as flaky. It is written, not run, and says why."""
    import json

    import onnx

    light = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
    shutil.copy(light, tmp_path / "squeezenet.onnx")
    path = scenario_file("name: ort\nmodel: squeezenet.onnx\niterations: 2\n")
    path.rename(tmp_path / "ort.yaml")
    out = tmp_path / "run"
    run_cli("run", str(tmp_path / "ort.yaml"), "--out", str(out))
    (variant,) = json.loads(run_cli("summary", str(out), "--json").stdout)["variants"]
    assert variant["verdict"] == "ORT_MISMATCH"
    done = run_cli("repro", str(out), variant["variant_id"], check=False)
    assert done.returncode == 2 and "reproduced in" not in done.stdout
    assert "the script cannot look for ORT_MISMATCH: it compares outputs with MNN's" in done.stderr
    assert "--anyway" in done.stderr and (out / "repro" / f"{variant['variant_id']}.py").exists()


def test_the_scripts_leak_rule_is_the_runs(monkeypatch):
    """Growth and rate both count: 18 MiB over 1,000 iterations is a leak; the same growth
    over 400,000 is below the rate (64 KiB per 1,000); a flat line is none."""
    from stress.repro import script
    from stress.repro.make import LEAK_RULE

    monkeypatch.setattr(script, "SETTINGS", {"leak": LEAK_RULE})
    base = 100 << 20

    def rising(n: int, by: int) -> list[int]:
        return [int(v) for v in numpy.linspace(base, base + by, n)]

    assert script.leaked(rising(1000, 18 << 20))
    assert not script.leaked(rising(400_000, 18 << 20))  # slow: 45 KiB per 1,000
    assert not script.leaked(rising(1000, 4 << 20))  # little: 2 x 2.4 MiB < 16 MiB
    assert not script.leaked([base] * 1000)
    assert not script.leaked(rising(20, 64 << 20))  # too few to tell


def test_a_script_that_fails_is_not_a_reproduction_and_a_partial_one_says_what_was_not_seen(
    perturbed_run,
):
    """Python exits 1 on an uncaught exception, the status of "reproduced": the script's own
    failure has a status of its own. A reproduction of some of what the run saw names the rest."""
    from stress.repro.make import run_script

    out = perturbed_run
    vid = variant_ids(out)["api=module threads=1 sharing=own"]
    repro(out, vid, runs=0)
    script = out / "repro" / f"{vid}.py"
    text = script.read_text()
    looking = "'looking_for': ['mismatch', 'inconsistent']"
    assert looking in text
    script.write_text(text.replace(looking, "'looking_for': ['mismatch', 'invalid']"))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "looked for mismatch, invalid: REPRODUCED mismatch (not seen: invalid)" in done.stdout
    script.write_text(text.replace("def main() -> int:\n", "def main() -> int:\n    1 / 0\n"))
    failed = run_script(script, 1, ["mismatch"], 60)
    assert failed.reproduced == 0 and failed.outcomes[0].startswith("the script failed: ")
    assert "ZeroDivisionError" in failed.outcomes[0]
