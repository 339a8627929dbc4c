"""Which node may run which variant: the ``node`` factor's check before the run, and the
driver's test as it gives variants out (``stress.factors.placement``)."""

from __future__ import annotations

from stress.coordinator.plan import VariantState
from stress.errors import ScenarioError
from stress.factors.placement import ALL, ANY


def check(states: list[VariantState], hosts: list[str] | None) -> None:
    """Refuse, before anything runs, a variant placed where it cannot run: on a node this
    cluster does not have, or on a node at all in a run on one machine (``hosts`` None)."""
    for state in states:
        node = state.variant.params.get("node", ANY)
        if node == ANY or (hosts is not None and node in hosts):
            continue
        if hosts is None:
            why = f"node={node} places the variant on a node of a cluster, and this run has none"
            fix = "run it with --ray ADDRESS (see docs/ray.md), or leave `node` out"
        else:
            asked = "on every node: no node is known" if node == ALL else f"on {node!r}"
            why = f"node={node} asks for the variant {asked}; the cluster's nodes are " + (
                ", ".join(hosts) or "none"
            )
            fix = "name a node as its rows' host column names it, or write `node: all`"
        raise ScenarioError(why, file=str(state.scenario.path), key="matrix.node", fix=fix)


def fits(state: VariantState, host: str) -> bool:
    """Whether the node ``host`` may run ``state``'s variant."""
    return state.variant.params.get("node", ANY) in (ANY, host)
