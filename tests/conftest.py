"""Shared fixtures: a private model cache, scenario files, and running the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pyarrow.dataset as ds
import pytest

REPO = Path(__file__).resolve().parents[1]

# One model cache for the whole session, away from the user's own.
os.environ.setdefault("MNN_STRESS_CACHE", tempfile.mkdtemp(prefix="mnn-stress-cache-"))
os.environ.pop("MNN_STRESS_TEST_FAULT", None)


@pytest.fixture
def scenario_file(tmp_path: Path):
    """Write a scenario file from an indented YAML string; returns its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


def run_cli(
    *args: str, fault: str | None = None, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run ``python -m stress ARGS`` for real; ``fault`` sets the test-only fault injection."""
    env = dict(os.environ)
    if fault:
        env["MNN_STRESS_TEST_FAULT"] = fault
    done = subprocess.run(
        [sys.executable, "-m", "stress", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done


def read_iterations(run_dir: Path):
    return ds.dataset(str(run_dir / "iterations"), format="parquet").to_table().to_pandas()


def read_events(run_dir: Path):
    files = sorted((run_dir / "events").glob("*.parquet"))
    if not files:
        return None
    return ds.dataset([str(f) for f in files], format="parquet").to_table().to_pandas()
