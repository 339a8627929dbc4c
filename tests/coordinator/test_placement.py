"""The ``node`` factor: where a cluster run places a variant; ``all`` crossed with the nodes."""

from __future__ import annotations

import pytest

from stress.coordinator.cluster import placement
from stress.coordinator.cluster.slots import NodeSlot
from stress.coordinator.plan import Budget, plan
from stress.errors import ScenarioError
from stress.scenario import load_scenario
from stress.scenario.variants import expand
from tests.conftest import run_cli

HOSTS = ["vm/aaa", "vm/bbb"]
SLOTS = [
    NodeSlot("vm/aaa", "a", None, 1, {"CPU": 1.0, "arm64": 1.0}, {"zone": "lab-2"}),
    NodeSlot("vm/bbb", "b", None, 1, {"CPU": 1.0}),
]


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
        placement.check(states, SLOTS)
    message = refused.value.render()
    assert "matrix.node" in message and "no node of the cluster has node=vm/zzz" in message
    nodes = "vm/aaa resources {'arm64': 1.0} labels {'zone': 'lab-2'}; vm/bbb"
    assert f"the cluster's nodes are {nodes}" in message
    assert placement.fits(states[0], SLOTS[0]) and not placement.fits(states[0], SLOTS[1])
    free = plan([_scenario(scenario_file, "  api: [session]\n")], Budget(), 2, HOSTS)
    assert all(placement.fits(free[0], slot) for slot in SLOTS)
    placement.check(free, SLOTS)
    placement.check(free, None)


def test_placement_asks_for_resources_and_labels_a_node_has(scenario_file):
    def placed(text: str):
        loaded = load_scenario(
            scenario_file(f"name: p\nmodel: tiny\niterations: 5\nplacement: {text}\n")
        )
        return plan([loaded], Budget(), 2, HOSTS)

    arm = placed("{resources: {arm64: 1}}")
    assert [placement.fits(arm[0], slot) for slot in SLOTS] == [True, False]
    lab = placed("{labels: {zone: lab-2}, resources: {CPU: 1}}")
    assert [placement.fits(lab[0], slot) for slot in SLOTS] == [True, False]
    greedy = placed("{resources: {arm64: 2}}")
    with pytest.raises(ScenarioError) as refused:
        placement.check(greedy, SLOTS)
    assert "no node of the cluster has resources {'arm64': 2.0}" in refused.value.render()
    assert refused.value.key == "placement"
    with pytest.raises(ScenarioError) as alone:
        placement.check(arm, None)
    assert "placement: chooses nodes of a cluster" in alone.value.render()


def test_without_ray_a_placed_variant_is_refused_before_anything_runs(scenario_file, tmp_path):
    path = scenario_file("name: m\nmodel: tiny\niterations: 5\nmatrix:\n  node: all\n")
    done = run_cli("run", str(path), "--out", str(tmp_path / "run"), check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "matrix.node" in done.stderr and "--ray ADDRESS" in done.stderr
    assert not (tmp_path / "run").exists()
