"""A plain ``pip install`` (no extras, a fresh venv) runs a scenario in which a worker crashes,
then ``summary``, ``report --html``, ``compare`` and ``repro`` on it: what a user who never
installed the test extras meets. The test environment has pandas, onnx and onnxruntime, which
can hide a missing dependency; this venv has none of them. Marked ``install`` (deselect with
``-m "not install"``); pip needs its index (PyPI), and its cache makes it quicker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.install, pytest.mark.integration]

SCENARIO = "name: plain\nmodel: tiny\niterations: 30\nmax_crashes: 3\n"
NOT_DEPENDENCIES = ("pandas", "onnx", "onnxruntime", "pytest", "ray")  # extras only
_UNCOPIED = (".git", ".venv", "build", "results", "*.egg-info", "__pycache__", ".*_cache")


class Plain:
    """The venv, a folder to work in (not the repository), and its own model cache."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        self.work = root / "work"
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env["MNN_STRESS_CACHE"] = str(root / "cache")
        self.env.pop("MNN_STRESS_TEST_FAULT", None)

    def run(self, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env, MNN_STRESS_TEST_FAULT=fault) if fault else self.env
        return subprocess.run(
            [str(self.bin / "mnn-stress"), *args],
            cwd=self.work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Plain:
    """A copy of the repository installed with ``pip install`` into a new venv."""
    root = tmp_path_factory.mktemp("plain")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*_UNCOPIED))
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    installed = subprocess.run(
        [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr
    print(f"\nplain install: venv and pip install in {time.monotonic() - started:.0f} s")
    venv = Plain(root)
    venv.work.mkdir()
    (venv.work / "plain.yaml").write_text(SCENARIO)
    return venv


@pytest.fixture(scope="module")
def crashed(plain: Plain) -> Path:
    """A run in which the worker dies by SIGSEGV at iteration 10 and a replacement finishes."""
    done = plain.run("run", "plain.yaml", "--out", "crashed", "--workers", "1", fault="segv@10")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"run directory: {plain.work / 'crashed'}" in done.stdout
    assert "SIGSEGV" in done.stdout
    return plain.work / "crashed"


def test_the_venv_has_no_extra(plain: Plain):
    for module in NOT_DEPENDENCIES:
        found = subprocess.run(
            [str(plain.bin / "python"), "-c", f"import {module}"], cwd="/", capture_output=True
        )
        assert found.returncode != 0, f"{module} is installed: the test proves nothing"


def test_summary_and_report_of_a_run_with_a_crash(plain: Plain, crashed: Path):
    summary = plain.run("summary", "crashed", "--json")
    assert summary.returncode == 0, summary.stderr
    (variant,) = json.loads(summary.stdout)["variants"]
    assert variant["verdict"] == "CRASHED" and variant["events"]["crash"] == 1
    assert json.loads(summary.stdout)["crash_signatures"][0]["first"]  # a timestamp, read back
    report = plain.run("report", "crashed", "--html", "report.html")
    assert report.returncode == 1, report.stderr  # a finding: the crash
    assert "deaths: 1 crash" in report.stdout and "SIGSEGV" in report.stdout
    page = (plain.work / "report.html").read_text()
    assert "Worker deaths over time" in page and "No deaths." not in page  # one died


def test_ray_without_the_extra_says_how_to_install_it(plain: Plain):
    """Before anything runs: no run directory is made."""
    done = plain.run("run", "plain.yaml", "--out", "spread", "--ray", "local")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--ray needs Ray, which is not installed here" in done.stderr
    assert "pip install 'mnn-stress[ray]'" in done.stderr
    assert not (plain.work / "spread").exists()


def test_compare_a_clean_run_with_the_crashed_one(plain: Plain, crashed: Path):
    clean = plain.run("run", "plain.yaml", "--out", "clean", "--workers", "1")
    assert clean.returncode == 0, clean.stderr
    done = plain.run("compare", "clean", "crashed")
    assert done.returncode == 1, done.stdout + done.stderr  # B is worse
    assert "ok -> CRASHED" in done.stdout  # the verdict that turned into a finding


def test_repro_script_runs_elsewhere_with_the_bare_venv(plain: Plain, crashed: Path):
    variant = next(iter(json.loads((crashed / "manifest.json").read_text())["variants"]))
    done = plain.run("repro", "crashed", variant, "--runs", "1", "--out", "repro/repro.py")
    assert done.returncode == 0, done.stderr
    assert "reproduced in 1 of 1 fresh runs" in done.stdout
    # the script's folder (the script and the model beside it) moved as a whole
    elsewhere = Path(shutil.move(plain.work / "repro", plain.root / "elsewhere"))
    script = elsewhere / "repro.py"
    alone = subprocess.run(
        [str(plain.bin / "python"), script.name],
        cwd=elsewhere,
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert alone.returncode == -signal.SIGSEGV, alone.stdout + alone.stderr  # as in the run


BLOCKED = """import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Absent())
"""


@pytest.mark.parametrize("command", ["summary", "report", "compare"])
def test_without_the_extras_importable_every_reader_works_on_a_crash(tmp_path, command):
    """The quick guard beside the venv above: the readers run with pandas, onnx and
    onnxruntime made unimportable in this environment (pyarrow needs pandas to turn ns
    timestamps into datetimes: a crash's event made every reader raise)."""
    from tests.conftest import run_cli

    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    run_cli("run", str(scenario), "--out", str(out), "--no-reference", fault="segv@10")
    args = {"summary": [str(out)], "report": [str(out), "--html", str(tmp_path / "r.html")]}
    args["compare"] = [str(out), str(out)]
    code = BLOCKED.format(names=list(NOT_DEPENDENCIES[:3])) + (
        f"sys.argv = ['mnn-stress', {command!r}, *{args[command]!r}]\n"
        "from stress.cli.main import main\nmain()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 1), done.stderr  # 1: report's and compare's findings
    assert "Traceback" not in done.stderr and "bug in mnn-stress" not in done.stderr
    assert "SIGSEGV" in done.stdout or command == "compare"
