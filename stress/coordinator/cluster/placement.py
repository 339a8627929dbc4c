"""Which node may run which variant: the ``node`` factor's check before the run, and the
driver's test as it gives variants out (``stress.factors.placement``)."""

from __future__ import annotations

from stress.coordinator.cluster.slots import NodeSlot
from stress.coordinator.plan import VariantState
from stress.errors import ScenarioError
from stress.factors.placement import ANY
from stress.scenario.schema import PlacementSpec


def check(states: list[VariantState], slots: list[NodeSlot] | None) -> None:
    """Refuse, before anything runs, a variant placed where it cannot run: on a node the
    cluster does not have, on no node its scenario's ``placement`` allows, or on a node at all
    in a run on one machine (``slots`` None)."""
    for state in states:
        node = state.variant.params.get("node", ANY)
        placed = state.scenario.spec.placement
        path = str(state.scenario.path)
        if slots is None and node != ANY:
            raise ScenarioError(
                f"node={node} places the variant on a node of a cluster, and this run has none",
                file=path,
                key="matrix.node",
                fix="run it with --ray ADDRESS (see docs/ray.md), or leave `node` out",
            )
        if slots is None and placed is not None:
            raise ScenarioError(
                "placement: chooses nodes of a cluster, and this run has none",
                file=path,
                key="placement",
                fix="run it with --ray ADDRESS (see docs/ray.md), or leave `placement` out",
            )
        if slots is not None and not any(fits(state, slot) for slot in slots):
            raise ScenarioError(
                f"{_asked(node, placed)}; the cluster's nodes are "
                + "; ".join(_shown(slot) for slot in slots),
                file=path,
                key="matrix.node" if node != ANY else "placement",
                fix="name a node as its rows' host column names it (or `all`), and ask for "
                "resources and labels that some node has",
            )


def fits(state: VariantState, slot: NodeSlot) -> bool:
    """Whether ``slot``'s node may run ``state``'s variant: its ``node`` and its scenario's
    ``placement`` allow it."""
    if state.variant.params.get("node", ANY) not in (ANY, slot.host):
        return False
    placed = state.scenario.spec.placement
    if placed is None:
        return True
    has = all(slot.resources.get(name, 0.0) >= need for name, need in placed.resources.items())
    return has and all(slot.labels.get(k) == v for k, v in placed.labels.items())


def _asked(node: str, placed: PlacementSpec | None) -> str:
    where = [] if node == ANY else [f"node={node}"]
    if placed is not None and placed.resources:
        where.append(f"resources {placed.resources}")
    if placed is not None and placed.labels:
        where.append(f"labels {placed.labels}")
    return "no node of the cluster has " + " and ".join(where or ["room"])


def _shown(slot: NodeSlot) -> str:
    custom = {k: v for k, v in slot.resources.items() if k not in _RAY_OWN and ":" not in k}
    extra = f" resources {custom}" if custom else ""
    return slot.host + extra + (f" labels {slot.labels}" if slot.labels else "")


_RAY_OWN = {"CPU", "GPU", "memory", "object_store_memory"}
