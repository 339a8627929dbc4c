"""What a cluster node hands the driver at each collect: the part files it wrote, how its
variants stand, lines for the run's log. Plain data, pickled through Ray's object store."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from stress.coordinator.plan import VariantState
from stress.records.states import VariantStatus


@dataclass(frozen=True)
class VariantProgress:
    """A variant's state on its node, as the driver's copy of it must become."""

    variant_id: str
    status: VariantStatus
    completed: int
    crashes: int
    next_iterations: list[int]
    used_s: float
    workers_started: int
    outcomes: dict[int, int]
    rss_bytes: int | None

    @classmethod
    def of(cls, state: VariantState) -> VariantProgress:
        return cls(
            state.variant.variant_id,
            state.status,
            state.completed,
            state.crashes,
            list(state.next_iterations),
            state.used_so_far(),
            state.workers_started,
            dict(state.outcomes),
            state.rss_bytes,
        )

    def apply(self, state: VariantState) -> None:
        """Make the driver's ``state`` say what the node's says (live grades are the driver's
        own: it grades the rows it receives)."""
        state.status = self.status
        state.completed = self.completed
        state.crashes = self.crashes
        state.next_iterations = list(self.next_iterations)
        state.used_s = self.used_s
        state.workers_started = self.workers_started
        state.outcomes = collections.Counter(self.outcomes)
        state.rss_bytes = self.rss_bytes


@dataclass(frozen=True)
class Shipment:
    """One collect from one node."""

    host: str
    iterations: list[bytes]  # Parquet part files, as written on the node, oldest first
    events: list[bytes]
    progress: list[VariantProgress]
    notes: list[str]
    running: int  # workers running there now
    waiting: int  # variants given and not started yet
    finished: bool  # its coordinator has ended: nothing more will come
    failure: str | None  # why it ended early (a failure of the harness there), if it did
    logs: list[tuple[str, bytes]] = field(default_factory=list)  # workers' logs, at the end
