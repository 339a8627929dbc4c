"""``mnn-stress compare RUN_A RUN_B``: variants matched by id, rates with intervals, the
direction of a change, and whether the two runs' clean references agree."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration

SCENARIO = """
    name: pair
    model: tiny
    seed: {seed}
    iterations: 30
    matrix:
      api: [session, module]
"""


def run(scenario_file, tmp_path, name: str, fault=None, seed=0):
    path = scenario_file(SCENARIO.format(seed=seed), name=f"{name}.yaml")
    out = tmp_path / name
    run_cli("run", str(path), "--out", str(out), fault=fault)
    return out


def compared(a, b):
    done = run_cli("compare", str(a), str(b), check=False)
    as_json = json.loads(run_cli("compare", str(a), str(b), "--json", check=False).stdout)
    return done, {v["label"]: v for v in as_json["variants"]}, as_json


def test_a_variant_that_got_worse_is_named_and_fails_the_comparison(scenario_file, tmp_path):
    clean = run(scenario_file, tmp_path, "before")
    broken = run(scenario_file, tmp_path, "after", fault="perturb@0+?api=module")
    done, by_label, found = compared(clean, broken)
    assert done.returncode == 1
    module = by_label["api=module"]
    assert module["verdict"] == ["ok", "MISMATCH"]
    assert module["outcomes"]["mismatch"]["change"] == "worse"
    assert module["outcomes"]["mismatch"]["b"]["count"] == 30
    assert by_label["api=session"]["outcomes"] == {}  # nothing failed on either side
    assert by_label["api=session"]["latency_ratio"] > 0
    assert [r["agreement"] for r in found["references"]] == ["exact"]
    assert "mismatch worse: A 0 of 30" in done.stdout
    back, by_label, _ = compared(broken, clean)
    assert back.returncode == 0
    assert by_label["api=module"]["outcomes"]["mismatch"]["change"] == "better"


def test_references_that_differ_between_runs_are_graded(scenario_file, tmp_path):
    """Other inputs (another seed) under the same variant ids: the references disagree."""
    a = run(scenario_file, tmp_path, "a", seed=0)
    b = run(scenario_file, tmp_path, "b", seed=1)
    done, by_label, found = compared(a, b)
    (reference,) = found["references"]
    assert (
        reference["agreement"] == "mismatch" and reference["digests"][0] != reference["digests"][1]
    )
    assert set(by_label) == {"api=session", "api=module"}  # matched by id across the runs
    assert done.returncode == 1 and "reference pair/y: mismatch" in done.stdout


def test_variants_in_one_run_only_are_listed(scenario_file, tmp_path):
    a = run(scenario_file, tmp_path, "a")
    path = scenario_file("name: pair\nmodel: tiny\niterations: 5\n", name="b.yaml")
    run_cli("run", str(path), "--out", str(tmp_path / "b"))
    done, by_label, found = compared(a, tmp_path / "b")
    assert list(by_label) == ["api=session"]
    assert len(found["only_a"]) == 1 and found["only_b"] == []
    assert "only in A" in done.stdout
