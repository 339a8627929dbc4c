"""Repeats within one worker process against repeats across fresh ones (fresh_worker_every)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import read_events, read_iterations, run_cli

pytestmark = pytest.mark.integration

RECYCLED = """
    name: fresh
    model: tiny
    iterations: 9
    fresh_worker_every: 3
    matrix:
      api: [session, module]
"""


def run_recycled(scenario_file, tmp_path, fault=None):
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(RECYCLED)), "--out", str(out), fault=fault)
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    return out, {v["variant_id"]: v for v in summary["variants"]}


def test_a_fresh_worker_takes_over_every_k_iterations(scenario_file, tmp_path):
    out, summary = run_recycled(scenario_file, tmp_path)
    rows = read_iterations(out)
    assert read_events(out) is None  # a worker ending its share is not an event
    manifest = json.loads((out / "manifest.json").read_text())
    for vid, variant in summary.items():
        mine = rows[rows.variant_id == vid]
        assert sorted(mine.iteration) == list(range(9))  # none twice, none missing
        assert mine.groupby("worker_id").iteration.apply(list).tolist() == [
            [0, 1, 2],
            [3, 4, 5],
            [6, 7, 8],
        ]
        assert manifest["variants"][vid]["workers_started"] == 3
        assert (variant["workers"], variant["verdict"]) == (3, "ok")


def test_outputs_that_differ_only_across_fresh_workers(scenario_file, tmp_path):
    """From iteration 6 on every output differs: each worker is consistent with itself, the
    fresh workers disagree."""
    out, summary = run_recycled(scenario_file, tmp_path, fault="perturb@6+")
    for variant in summary.values():
        assert variant["distinct_within_worker"] == 1
        assert variant["distinct_first_per_worker"] == 2
        assert variant["distinct_outputs"] == 2
        assert variant["clean_bound"] is None  # inconsistent: nothing is ruled out
    shown = run_cli("summary", str(out)).stdout
    assert shown.count("2 among the first outputs of its 3 fresh workers") == 2


def test_fresh_worker_every_is_validated(scenario_file):
    bad = scenario_file("name: s\nmodel: tiny\nfresh_worker_every: 0\n")
    done = run_cli("validate", str(bad), check=False)
    assert done.returncode == 2 and "fresh_worker_every" in done.stderr


def test_outputs_that_differ_within_one_worker(scenario_file, tmp_path):
    """Only iteration 4 differs: the second worker disagrees with itself, every worker's
    first answer is the same."""
    _, summary = run_recycled(scenario_file, tmp_path, fault="perturb@4")
    for variant in summary.values():
        assert variant["distinct_within_worker"] == 2
        assert variant["distinct_first_per_worker"] == 1
