"""The ``mnn_version`` factor: cached environments of other MNN releases, the one column that
records the version that really ran, validation, and ``mnn-stress bisect``."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from stress.analysis.outcome import Outcome
from stress.errors import ScenarioError, StressError
from stress.factors import defaults
from stress.records.events import EVENT_SCHEMA, Event, EventKind
from stress.records.schema import ITERATION_SCHEMA
from stress.scenario import load_scenario
from stress.scenario.variants import variant_id
from stress.versions import envs
from stress.versions.bisect import by_output, parse_versions, search
from tests import conftest
from tests.conftest import read_iterations, run_cli

# An older release whose wheel installs with this Python and numpy, and that behaves unlike the
# installed one: misuse=unknown_output on the Module API crashes it (SIGSEGV in forward) where
# 3.4.0 and later raise SystemError while loading.
OTHER = "3.2.0"
UNKNOWN_OUTPUT_ON_MODULE = "v5f4376b3b3"  # scenarios/misuse.yaml: api=module misuse=unknown_output


def _lasting_envs_root() -> Path:
    """Environments outlive the test session (unlike conftest's model cache): they are keyed
    by version and never change, so the second test run reuses the first one's."""
    if os.environ.get(envs.ENVS_VAR):
        return Path(os.environ[envs.ENVS_VAR])
    own = conftest._OWN_CACHE is not None  # conftest made MNN_STRESS_CACHE: not the user's
    base = Path.home() / ".cache" / "mnn-stress" if own else Path(os.environ["MNN_STRESS_CACHE"])
    return base / "envs"


@pytest.fixture(scope="session")
def lasting_envs() -> Path:
    """OTHER's environment, made (about 3-12 s, 120 MiB) by the real command the first time;
    returns the root that holds it."""
    root = _lasting_envs_root()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(envs.ENVS_VAR, str(root))
        done = run_cli("envs", "prepare", "--version", OTHER, timeout=900)
    assert f"ok  MNN {OTHER}" in done.stdout
    return root


@pytest.fixture
def other_version(lasting_envs: Path, monkeypatch) -> str:
    """OTHER, its environment ready, MNN_STRESS_ENVS pointing there for this test."""
    monkeypatch.setenv(envs.ENVS_VAR, str(lasting_envs))
    return OTHER


# --- one column, the version that ran ---------------------------------------------------------
def test_mnn_version_is_one_column_of_rows_and_events():
    assert ITERATION_SCHEMA.names.count("mnn_version") == 1
    assert EVENT_SCHEMA.names.count("mnn_version") == 1


def test_an_events_version_is_the_one_its_worker_reported_not_the_one_asked():
    params = defaults()  # mnn_version=installed
    said = Event("r", "s", "v", 1, 2, EventKind.CRASH, mnn_version="3.2.0", params=params)
    silent = Event("r", "s", "v", 1, 2, EventKind.CRASH, params=params)  # died before hello
    assert said.row()["mnn_version"] == "3.2.0"
    assert silent.row()["mnn_version"] is None


@pytest.mark.integration
def test_the_cached_environments_worker_reports_its_own_mnn_version(
    other_version, scenario_file, tmp_path
):
    """A real run through the coordinator: each variant's rows carry the MNN its worker
    imported, and the installed variant keeps the id it had before the factor existed."""
    path = scenario_file(
        f"""
        name: versions
        model: tiny
        seed: 0
        iterations: 5
        matrix:
          mnn_version: [installed, {other_version}]
        """
    )
    run_cli("run", str(path), "--out", str(tmp_path / "run"), "--no-reference")
    rows = read_iterations(tmp_path / "run")
    ran = rows.groupby("variant_id").mnn_version.unique().to_dict()
    before = json.dumps({"scenario": "versions", "params": {}}, sort_keys=True).encode()
    installed_id = "v" + hashlib.blake2b(before, digest_size=5).hexdigest()
    other_id = variant_id("versions", {**defaults(), "mnn_version": other_version})
    assert {k: list(v) for k, v in ran.items()} == {
        installed_id: [envs.mnn_version()],
        other_id: [other_version],
    }
    assert envs.mnn_version() != other_version
    assert len(rows) == 10 and (rows.status == "ok").all()


# --- validation -------------------------------------------------------------------------------
def test_validation_refuses_a_version_without_an_environment(scenario_file, tmp_path, monkeypatch):
    empty = tmp_path / "no-envs"
    monkeypatch.setenv(envs.ENVS_VAR, str(empty))
    path = scenario_file(
        """
        name: missing
        model: tiny
        matrix:
          mnn_version: [installed, 3.1.0]
        """
    )
    done = run_cli("validate", str(path), check=False)
    assert done.returncode == 2
    assert f"{path}:4: matrix.mnn_version: mnn_version=3.1.0" in done.stderr
    assert "mnn-stress envs prepare" in done.stderr
    assert not empty.exists() or not any(empty.iterdir())  # nothing made by validating


def test_python_and_a_version_are_not_both_given(scenario_file):
    path = scenario_file(
        f"""
        name: both
        model: tiny
        python: {sys.executable}
        matrix:
          mnn_version: [installed, {OTHER}]
        """
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key == "python" and f"mnn_version: {OTHER}" in caught.value.message


@pytest.mark.integration
def test_an_environment_whose_mnn_is_not_the_one_asked_is_refused_before_the_run(
    scenario_file, tmp_path, monkeypatch
):
    """An environment that claims 3.1.0 but runs the installed MNN: the user's environment,
    not a bug of ours and not a finding; refused before anything runs, naming the
    environment and the command that rebuilds it (a worker would stop at once as well)."""
    monkeypatch.setenv(envs.ENVS_VAR, str(tmp_path / "envs"))
    broken = envs.env_dir("3.1.0")
    (broken / "bin").mkdir(parents=True)
    python = broken / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    (broken / envs.MARKER).write_text(json.dumps(_marker("3.1.0", broken)))
    path = scenario_file(
        """
        name: broken
        model: tiny
        iterations: 5
        matrix:
          mnn_version: 3.1.0
        """
    )
    out = tmp_path / "run"
    done = run_cli("run", str(path), "--out", str(out), "--no-reference", check=False)
    assert done.returncode == 2, done.stderr
    assert f"runs in the cached environment {broken}, which is broken" in done.stderr
    assert f"it imports MNN {envs.mnn_version()}" in done.stderr
    assert "fix: run `mnn-stress envs prepare --version 3.1.0`" in done.stderr
    assert "bug" not in done.stderr and not out.exists()


def _marker(version: str, path: Path) -> dict:
    return {
        "mnn": version,
        "numpy": "0",
        "python": "3",
        "platform": "test",
        "path": str(path),
        "requirements": [],
        "size_bytes": 0,
        "seconds": 0.0,
        "created": "now",
    }


# --- making environments ----------------------------------------------------------------------
def test_two_preparers_of_one_environment_build_it_once(tmp_path, monkeypatch):
    """The lock: the second waits and takes the first one's environment. A build killed
    earlier (its temporary folder) and a folder without a marker are cleared, and scripts
    name the final folder, not the temporary one they were made in."""
    monkeypatch.setenv(envs.ENVS_VAR, str(tmp_path))
    installed = envs.mnn_version()  # a fake install: the probe finds the installed MNN
    final = envs.env_dir(installed)
    (final / "bin").mkdir(parents=True)  # unfinished: no marker
    stale = tmp_path / f".building-{final.name}-1"
    stale.mkdir()
    builds = []

    def install(target: Path, requirements: list[str]) -> None:
        builds.append(target)
        (target / "bin").mkdir(parents=True)
        (target / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        (target / "bin" / "python").chmod(0o755)
        (target / "bin" / "tool").write_text(f"#!{target}/bin/python\n")
        time.sleep(0.5)  # long enough for the other preparer to find the lock taken

    monkeypatch.setattr(envs, "_install", install)
    results: list[envs.EnvInfo] = []
    threads = [
        threading.Thread(target=lambda: results.append(envs.prepare(installed))) for _ in "ab"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(results) == 2 and results[0] == results[1]
    assert results[0].mnn == installed and envs.python_for(installed) == final / "bin" / "python"
    assert (final / "bin" / "tool").read_text() == f"#!{final}/bin/python\n"
    assert not list(tmp_path.glob(".building-*"))


@pytest.mark.integration
def test_envs_list_shows_the_prepared_environment(other_version):
    done = run_cli("envs", "list")
    assert f"MNN {other_version}" in done.stdout and "MiB" in done.stdout


# --- bisect: the search, without MNN ----------------------------------------------------------
VERSIONS = [f"1.{i}.0" for i in range(16)]


def _measuring(labels: list[str]):
    asked: list[str] = []

    def measure(version: str) -> Outcome:
        asked.append(version)
        return Outcome(labels[VERSIONS.index(version)], "", 0, 100)

    return measure, asked


@pytest.mark.parametrize("change", range(1, 16))
def test_a_monotone_change_is_found_in_log2_steps(change):
    measure, asked = _measuring(["crash"] * change + ["consistent"] * (16 - change))
    found = search(VERSIONS, measure)
    assert found.changes() == [(VERSIONS[change], "crash", "consistent")]
    assert len(asked) <= 2 + math.ceil(math.log2(15)) and len(set(asked)) == len(asked)
    assert not found.exhaustive and found.monotone


def test_a_third_outcome_past_the_change_tests_every_version():
    """a, then b, then c: the search meets b between the change it found and the end (c),
    so the outcome is not monotone, and every version is tested."""
    measure, asked = _measuring(["a"] * 4 + ["b"] * 4 + ["c"] * 8)
    found = search(VERSIONS, measure)
    assert sorted(asked) == sorted(VERSIONS) and found.exhaustive and not found.monotone
    assert found.changes() == [("1.4.0", "a", "b"), ("1.8.0", "b", "c")]


def test_equal_ends_are_no_change_unless_every_version_is_asked():
    labels = ["a"] * 7 + ["b"] + ["a"] * 8
    measure, asked = _measuring(labels)
    assert search(VERSIONS, measure).changes() == [] and asked == ["1.0.0", "1.15.0"]
    measure, asked = _measuring(labels)
    assert len(search(VERSIONS, measure, every=True).changes()) == 2 and len(asked) == 16


def test_by_output_a_change_of_the_numbers_is_a_change():
    outcomes = {v: Outcome("consistent", "", 0, 9, output="y:aa" if v < "1.5" else "y:bb")
                for v in VERSIONS[:9]}  # fmt: skip
    found = search(VERSIONS[:9], outcomes.__getitem__, key=by_output)
    assert found.changes() == [("1.5.0", "consistent (y:aa)", "consistent (y:bb)")]
    assert search(VERSIONS[:9], outcomes.__getitem__).changes() == []


def test_version_ranges():
    released = ["3.0.0", "3.1.0", "3.2.0", "3.4.1", "3.6.1"]
    assert parse_versions("3.1.0..3.4.1", released) == ["3.1.0", "3.2.0", "3.4.1"]
    assert parse_versions("3.6.1,3.0.0", released) == ["3.0.0", "3.6.1"]
    assert parse_versions(None, released) == released
    for bad in ("3.1..3.4.1", "3.0.0", "3.5.0..3.6.0"):
        with pytest.raises(StressError):
            parse_versions(bad, released)


def test_the_bound_of_an_outcome_not_seen():
    assert Outcome("consistent", "", 0, 100).rate() == "none in 100 (rate < 3 %)"
    assert Outcome("crash", "SIGSEGV", 3, 3).rate() == "3 of 3 (100%)"


# --- bisect: a real one -----------------------------------------------------------------------
@pytest.mark.integration
def test_a_real_bisect_finds_where_an_unknown_output_stopped_crashing(other_version, tmp_path):
    """misuse=unknown_output on the Module API, under OTHER (its cached environment) and the
    installed MNN: a SIGSEGV becomes a SystemError, each cell a real run kept on disk."""
    installed = envs.mnn_version()
    out = tmp_path / "bisect"
    done = run_cli(
        "bisect", "scenarios/misuse.yaml", "--variant", UNKNOWN_OUTPUT_ON_MODULE,
        "--versions", f"{other_version},{installed}", "--iterations", "20", "--out", str(out),
    )  # fmt: skip
    assert (
        f"first version where the outcome changed: {installed} "
        "(from crash SIGSEGV to raises SystemError)" in done.stdout
    )
    result = json.loads((out / "bisect.json").read_text())
    assert result["cells"][other_version]["ran"] == other_version  # from its crash events
    assert result["cells"][installed]["label"] == "raises SystemError"
    assert list((out / f"mnn-{other_version}" / "events").glob("*.parquet"))
