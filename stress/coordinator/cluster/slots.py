"""The cluster a run goes on: Ray, connected, and its alive nodes at the start, each with the
host name its rows will carry and the workers it runs at once."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from types import ModuleType


@dataclass(frozen=True)
class NodeSlot:
    """One alive node of the cluster, as the run names and uses it."""

    host: str  # its host name, with the start of its Ray id where two nodes share a name
    node_id: str
    address: str | None
    capacity: int  # workers at once there
    resources: dict[str, float] = field(default_factory=dict)  # Ray's, as the node has them
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterRun:
    """The cluster a run goes on: Ray, connected, and its nodes at the start."""

    ray: ModuleType
    slots: list[NodeSlot]

    @property
    def hosts(self) -> list[str]:
        return [slot.host for slot in self.slots]


def slots(ray: ModuleType, workers: int | None) -> list[NodeSlot]:
    """The cluster's alive nodes; ``workers`` at once on each (None: as many as its CPUs)."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    names = collections.Counter(n["NodeManagerHostname"] for n in alive)
    found = []
    for info in alive:
        name = info["NodeManagerHostname"]
        host = name if names[name] == 1 else f"{name}/{info['NodeID'][:6]}"
        resources = dict(info.get("Resources") or {})
        capacity = workers or max(1, int(resources.get("CPU", 1)))
        address = info.get("NodeManagerAddress")
        labels = {str(k): str(v) for k, v in (info.get("Labels") or {}).items()}
        found.append(NodeSlot(host, info["NodeID"], address, capacity, resources, labels))
    return found
