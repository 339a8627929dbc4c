"""The ``node`` factor: where a cluster run places a variant; ``all`` crossed with the nodes."""

from __future__ import annotations

import pytest

from stress.coordinator.cluster import placement
from stress.coordinator.plan import Budget, plan
from stress.errors import ScenarioError
from stress.scenario import load_scenario
from stress.scenario.variants import expand
from tests.conftest import run_cli

HOSTS = ["vm/aaa", "vm/bbb"]


def _scenario(scenario_file, matrix: str):
    return load_scenario(scenario_file(f"name: m\nmodel: tiny\niterations: 5\nmatrix:\n{matrix}"))


def test_all_runs_each_variant_once_on_every_node_as_variants_of_their_own(scenario_file):
    loaded = _scenario(scenario_file, "  api: [session, module]\n  node: all\n")
    variants = expand(loaded, HOSTS)
    assert [(v.params["api"], v.params["node"]) for v in variants] == [
        ("session", "vm/aaa"), ("session", "vm/bbb"), ("module", "vm/aaa"), ("module", "vm/bbb"),
    ]  # fmt: skip
    assert [v.label for v in variants] == [
        "api=session node=vm/aaa", "api=session node=vm/bbb",
        "api=module node=vm/aaa", "api=module node=vm/bbb",
    ]  # fmt: skip
    assert len({v.variant_id for v in variants}) == 4
    plain = _scenario(scenario_file, "  api: [session, module]\n")
    alone = expand(plain, HOSTS)
    assert [v.params["node"] for v in alone] == ["any", "any"]  # placed by the driver
    # the same ids with or without a cluster: `any` is the default
    assert [v.variant_id for v in alone] == [v.variant_id for v in expand(plain)]


def test_a_variant_is_placed_only_on_a_node_the_cluster_has(scenario_file):
    states = plan([_scenario(scenario_file, "  node: [vm/aaa, vm/zzz]\n")], Budget(), 2, HOSTS)
    with pytest.raises(ScenarioError) as refused:
        placement.check(states, HOSTS)
    message = refused.value.render()
    assert "matrix.node" in message and "node=vm/zzz" in message
    assert "the cluster's nodes are vm/aaa, vm/bbb" in message
    assert placement.fits(states[0], "vm/aaa") and not placement.fits(states[0], "vm/bbb")
    free = plan([_scenario(scenario_file, "  api: [session]\n")], Budget(), 2, HOSTS)
    assert all(placement.fits(free[0], host) for host in HOSTS)
    placement.check(free, HOSTS)
    placement.check(free, None)


def test_without_ray_a_placed_variant_is_refused_before_anything_runs(scenario_file, tmp_path):
    path = scenario_file("name: m\nmodel: tiny\niterations: 5\nmatrix:\n  node: all\n")
    done = run_cli("run", str(path), "--out", str(tmp_path / "run"), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "matrix.node" in done.stderr and "--ray ADDRESS" in done.stderr
    assert not (tmp_path / "run").exists()
