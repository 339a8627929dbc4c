"""The commands a user types, end to end, with real workers."""

from __future__ import annotations

import json

import pytest

from .conftest import REPO, read_iterations, run_cli

pytestmark = pytest.mark.integration


def test_bundled_scenarios_run_and_summarise(tmp_path):
    out = tmp_path / "run"
    done = run_cli("run", str(REPO / "scenarios"), "--out", str(out), "--iterations", "3")
    assert f"run directory: {out}" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["versions"]["MNN"] and manifest["host"]["logical_cores"]
    assert {s["name"] for s in manifest["scenarios"]} == {"control", "three_input", "deep"}
    rows = read_iterations(out)
    assert len(rows) == 3 * len(manifest["variants"])
    assert set(rows.status) == {"ok"}
    assert rows.groupby(["variant_id", "output_name"]).digest.nunique().max() == 1
    assert set(rows.num_thread) == {1, 2} and set(rows.precision) == {"normal", "low"}
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    assert {v["variant_id"] for v in summary["variants"]} == set(manifest["variants"])
    for variant in summary["variants"]:
        assert (variant["iterations"], variant["ok"], variant["distinct_outputs"]) == (3, 3, 1)
        assert variant["latency_p50_ms"] > 0


def test_out_refuses_a_directory_holding_a_run(tmp_path, scenario_file):
    path = scenario_file("name: once\nmodel: tiny\niterations: 2\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out))
    again = run_cli("run", str(path), "--out", str(out), check=False)
    assert again.returncode != 0 and "already holds a run" in again.stderr


def test_invalid_scenario_stops_before_any_worker(tmp_path, scenario_file):
    good = scenario_file("name: good\nmodel: tiny\niterations: 2\n", "good.yaml")
    bad = scenario_file("name: bad\nmodel: tiny\nmatrix:\n  api: [sesion]\n", "bad.yaml")
    out = tmp_path / "run"
    done = run_cli("run", str(good), str(bad), "--out", str(out), check=False)
    assert done.returncode == 2
    assert f"{bad}:4: matrix.api" in done.stderr
    assert not out.exists()


def test_summary_of_a_directory_that_is_not_a_run(tmp_path):
    done = run_cli("summary", str(tmp_path), check=False)
    assert done.returncode == 2 and "not a run directory" in done.stderr
