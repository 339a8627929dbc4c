"""The driver of a cluster run (``run --ray``): one ``NodeCoordinator`` actor per node of the
Ray cluster, each given variants as its workers free up (so faster nodes take more), and
everything they record written into the run directory here, part by part, with names of
this run directory's own sequence: ``summary``, ``report``, ``compare`` and ``repro`` read it
as any run.

It stands where ``Coordinator`` stands in ``stress.coordinator.runner``: ``run``, ``salvage``,
``compact_all``, ``failure``, ``lost_rows``. A node lost mid-run (its raylet or machine gone)
loses what it had not shipped yet; its unfinished variants go on on the other nodes from the
last iteration of each thread that reached the driver, so no iteration number is used twice.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stress.coordinator.cluster.node import NodeCoordinator
from stress.coordinator.cluster.placement import fits
from stress.coordinator.cluster.shipment import Shipment
from stress.coordinator.cluster.slots import ClusterRun, NodeSlot
from stress.coordinator.loop import PROGRESS_S, TICK_S, Hooks, StopRequests
from stress.coordinator.plan import VariantState
from stress.errors import RunFailure, StorageError, first_line
from stress.records.manifest_sections import NodeEntry
from stress.records.nodes import fingerprint
from stress.records.recorder import Listeners, Recorder
from stress.records.rundir import RunLayout
from stress.records.states import VariantStatus

POLL_S = 0.25  # how often each node is asked for what it recorded (and given variants)
WORKER_ID_STRIDE = 1_000_000  # node k numbers its workers from k x this: ids never collide
COMPACT_S = 2.0
START_S = 120.0  # for a node's coordinator to start (its actor placed, mnn-stress imported)
SILENT_S = 60.0  # a node that does not answer a call for this long is lost (a collect ships
# at most a fraction of a second of rows: this is a frozen node, not a slow one)
STOP_SILENT_S = 20.0  # the same once the run is stopping: its workers' grace is 10 s


@dataclass
class _Node:
    """The driver's view of one node."""

    actor: Any
    slot: NodeSlot  # its name, capacity, resources and labels
    entry: NodeEntry | None = None  # its fingerprint, as the manifest lists it
    call: Any = None  # the collect() in flight (a Ray ObjectRef)
    called_at: float = 0.0  # when (time.monotonic())
    done_here: set[str] = field(default_factory=set)  # finished there, rows maybe not all here
    running: int = 0
    waiting: int = 0
    given: set[str] = field(default_factory=set)  # variants given, not finished there
    finished: bool = False
    lost: str | None = None

    @property
    def host(self) -> str:
        return self.slot.host

    @property
    def capacity(self) -> int:
        return self.slot.capacity

    @property
    def active(self) -> bool:
        return not self.finished and self.lost is None


class ClusterCoordinator:
    def __init__(
        self,
        cluster: ClusterRun,
        run_id: str,
        run_dir: Path,
        states: list[VariantState],
        stop: StopRequests,
        fault: str | None,
        hooks: Hooks,
        first_worker_id: int,
        on_node: Callable[[NodeEntry], None],
    ) -> None:
        self.ray = cluster.ray
        self.slots = cluster.slots
        self.states = states
        self.by_id = {state.variant.variant_id: state for state in states}
        self.stop = stop
        self.hooks = hooks
        self.failure: RunFailure | None = None
        self.lost_rows = 0
        listeners = Listeners(hooks.on_note, hooks.on_disk, stop.request, hooks.on_rows)
        self.recorder = Recorder(run_dir, listeners, stopping=lambda: bool(stop.count))
        self.buffer = self.recorder.buffer  # always empty: parts arrive whole
        self.logs = RunLayout(run_dir).logs
        # the next iteration of each (variant, thread) whose row has reached the driver
        self.received: dict[tuple[str, int], int] = {}
        self.completed: collections.Counter[str] = collections.Counter()  # iterations received
        self.pending = collections.deque(s for s in states if not s.status.finished)
        self.on_node = on_node
        self.start = (run_id, first_worker_id, fault)
        self.nodes: list[_Node] = []

    def run(self) -> None:
        """Start a coordinator on every node, then feed them until every variant is done (or
        the run stops); a coordinator that cannot start is the run's failure."""
        self.nodes = _start_nodes(self.ray, self.slots, *self.start)
        self._fingerprint_nodes()
        self._drop_unplaceable()
        started = time.monotonic()
        next_tick = next_progress = next_compaction = started
        try:
            while any(node.active for node in self.nodes):
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_S
                    self.hooks.on_tick(self.states, now - started)
                if now >= next_progress:
                    next_progress = now + PROGRESS_S
                    running = [s for s in self.states if s.status is VariantStatus.RUNNING]
                    self._guard(self.hooks.on_progress, running)
                if now >= next_compaction:
                    next_compaction = now + COMPACT_S
                    self.recorder.compact()
                self._call_nodes()
                self._receive()
        finally:
            for node in self.nodes:
                if node.lost is None:
                    node.actor.shut.remote()
        for state in self.pending:  # never given: the run stopped first
            self._set(state, VariantStatus.SKIPPED)

    def salvage(self, make_room: Callable[[], None]) -> int:
        return 0  # nothing is buffered here: every part was written as it arrived

    def compact_all(self) -> None:
        self.recorder.compact_all()

    def _fingerprint_nodes(self) -> None:
        """Each node's fingerprint, from its coordinator: the first call, so a node where it
        cannot start (mnn-stress or MNN missing there, or a node Ray still lists though it is
        gone) is said here, by name, and left out; the run fails only if none can start."""
        refused = []
        asked = {node.actor.node.remote(): node for node in self.nodes}
        deadline = time.monotonic() + START_S
        while asked and not self.stop.count and time.monotonic() < deadline:
            ready, _ = self.ray.wait(list(asked), num_returns=len(asked), timeout=POLL_S)
            for ref in ready:
                node = asked.pop(ref)
                try:
                    node.entry = self.ray.get(ref)
                except self.ray.exceptions.RayError as exc:
                    node.lost = _said(exc)
                    refused.append(f"{node.host} ({node.lost})")
                    continue
                self._guard(self.on_node, node.entry)
        for node in asked.values():  # never placed: a node Ray lists, though gone
            node.lost = f"its coordinator did not start within {START_S:.0f} s"
            refused.append(f"{node.host} ({node.lost})")
        if refused:
            self.hooks.on_note(f"mnn-stress could not start on node(s): {', '.join(refused)}")
        here = _kind(fingerprint())
        other = [n.host for n in self.nodes if n.entry is not None and _kind(n.entry) != here]
        if other:
            self.hooks.on_note(
                f"node(s) {', '.join(other)} differ from this machine (CPU, architecture or MNN) "
                "whose clean reference grades every row: their mismatches may be legitimate "
                "differences of the machine (a reference per kind of node is not made yet)"
            )
        if all(node.lost is not None for node in self.nodes):
            self.failure = RunFailure(
                f"mnn-stress could not start on any node of the cluster: {', '.join(refused)}",
                fix="install the same mnn-stress, MNN and Ray on every node (pip install "
                "'mnn-stress[ray]'), under the same Python",
            )

    # --- calling the nodes -----------------------------------------------------------------
    def _call_nodes(self) -> None:
        """Ask every node without a call in flight for its news, giving it variants for its
        free workers; closing it once nothing is left to give; stopping it when asked."""
        stopping = self._stopping()
        for node in self.nodes:
            if not node.active or node.call is not None:
                continue
            give = [] if stopping else self._for(node)
            for state in give:
                node.given.add(state.variant.variant_id)
                state.node = node.host
                self._set(state, VariantStatus.RUNNING)
            # open while any variant may still come back from a node that is lost
            close = stopping or not (self.pending or any(n.given for n in self.nodes))
            stops = self.stop.count or (1 if self.failure is not None else 0)
            node.call = node.actor.collect.remote(give, close, stops)
            node.called_at = time.monotonic()

    def _for(self, node: _Node) -> list[VariantState]:
        """The pending variants ``node`` may take for its free workers, each scenario within
        its ``workers`` cap across the whole cluster."""
        free = node.capacity - node.running - node.waiting
        in_use = collections.Counter(
            s.variant.scenario for s in self.states if s.status is VariantStatus.RUNNING
        )
        give: list[VariantState] = []
        for state in list(self.pending):
            if len(give) >= free:
                break
            cap = state.scenario.spec.workers
            if not fits(state, node.slot) or (
                cap is not None and in_use[state.variant.scenario] >= cap
            ):
                continue
            in_use[state.variant.scenario] += 1
            self.pending.remove(state)
            give.append(state)
        return give

    def _silent(self) -> None:
        """A node that has not answered its call for SILENT_S (STOP_SILENT_S once the run is
        stopping) is lost: frozen (SIGSTOP, a hung machine) or cut off."""
        now = time.monotonic()
        limit = STOP_SILENT_S if self._stopping() else SILENT_S
        for node in self.nodes:
            if node.active and node.call is not None and now - node.called_at > limit:
                node.call = None
                with contextlib.suppress(Exception):  # it must not come back and go on
                    self.ray.kill(node.actor, no_restart=True)
                self._lose(node, TimeoutError(f"it did not answer for {limit:.0f} s"))

    def _receive(self) -> None:
        self._silent()
        calls = {node.call: node for node in self.nodes if node.call is not None}
        if not calls:
            time.sleep(POLL_S)
            return
        ready, _ = self.ray.wait(list(calls), num_returns=len(calls), timeout=POLL_S)
        for ref in ready:
            node = calls[ref]
            node.call = None
            try:
                shipment: Shipment = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                self._lose(node, exc)
                continue
            self._guard(self._take, node, shipment)
        if len(ready) < len(calls):
            return
        time.sleep(POLL_S)  # every node answered: the next round after a pause

    def _take(self, node: _Node, shipment: Shipment) -> None:
        for data in shipment.iterations:
            self.recorder.buffer.writer.write_file(data)
            rows = pq.read_table(pa.BufferReader(data))
            self._count_received(rows)
            self.hooks.on_rows(rows)
        for data in shipment.events:
            self.recorder.events.parts.write_file(data)
        for name, data in shipment.logs:
            self._write_log(name, data)
        for line in shipment.notes:
            self.hooks.on_note(line)
        for progress in shipment.progress:
            state = self.by_id.get(progress.variant_id)
            if state is None:
                continue
            before = state.status
            progress.apply(state)
            if state.status.finished:
                node.given.discard(progress.variant_id)
                node.done_here.add(progress.variant_id)
            if state.status is not before:
                self._set(state, state.status)
        node.running, node.waiting = shipment.running, shipment.waiting
        if shipment.failure is not None:
            self.hooks.on_note(f"{node.host}: {shipment.failure}")
        node.finished = shipment.finished
        if node.finished:  # its last parts are in this shipment: every row is here
            node.done_here.clear()

    def _write_log(self, name: str, data: bytes) -> None:
        """A worker's log from a node, under ``logs/`` as on one machine."""
        path = self.logs / Path(name).name  # a name, never a path from elsewhere
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError as exc:
            raise StorageError.of(exc, path) from exc

    def _count_received(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        keys = rows.select(["variant_id", "thread", "iteration"]).group_by(["variant_id", "thread"])
        counted = keys.aggregate([("iteration", "max"), ("iteration", "count_distinct")])
        for row in counted.to_pylist():
            key = (row["variant_id"], row["thread"])
            self.received[key] = max(self.received.get(key, 0), row["iteration_max"] + 1)
            self.completed[row["variant_id"]] += row["iteration_count_distinct"]

    # --- a node lost ----------------------------------------------------------------------
    def _lose(self, node: _Node, exc: Exception) -> None:
        """Its unfinished variants go back to the queue, each thread going on from its last
        iteration that reached the driver (what the node had not shipped is lost)."""
        node.lost = _said(exc)
        # a variant done there whose last rows had not been shipped yet goes on too
        short = {v for v in node.done_here if self.completed[v] < self.by_id[v].completed}
        given = [self.by_id[v] for v in sorted(node.given | short) if v in self.by_id]
        stopping = self._stopping()
        pinned = [state for state in given if state.variant.params.get("node") == node.host]
        moved = [state for state in given if state not in pinned and not stopping]
        for state in given:  # placed on that node alone, or the run is ending anyway
            if state not in moved:
                state.rss_bytes, state.node = None, None
                self._set(state, VariantStatus.INTERRUPTED)
        for state in moved:
            vid = state.variant.variant_id
            state.next_iterations = [
                self.received.get((vid, thread), 0) for thread in range(len(state.next_iterations))
            ]
            state.completed = self.completed[vid]  # what the node had not shipped is lost
            state.rss_bytes, state.node = None, None
            self._set(state, VariantStatus.PENDING)
            self.pending.appendleft(state)
        node.given.clear()
        if node.entry is not None:
            self._guard(self.on_node, dataclasses.replace(node.entry, lost=node.lost))
        stopped = len(given) - len(moved)
        self.hooks.on_note(
            f"node {node.host} lost ({node.lost}); {len(moved)} of its variants go on on the "
            "other nodes from their last iteration received"
            + (
                f"; {stopped} interrupted (placed on it alone, or the run is stopping)"
                if stopped
                else ""
            )
        )
        self._drop_unplaceable()
        if not any(n.active for n in self.nodes) and self.pending:
            self.failure = self.failure or RunFailure("every node of the cluster was lost")

    def _drop_unplaceable(self) -> None:
        """Variants waiting for a node that is gone can never run: skipped."""
        alive = [node.slot for node in self.nodes if node.lost is None]
        for state in [s for s in self.pending if not any(fits(s, slot) for slot in alive)]:
            self.pending.remove(state)
            self._set(state, VariantStatus.SKIPPED)

    # --- helpers ----------------------------------------------------------------------------
    def _stopping(self) -> bool:
        """Asked to stop (a signal), or unable to go on (a failure)."""
        return bool(self.stop.count) or self.failure is not None

    def _set(self, state: VariantState, status: VariantStatus) -> None:
        state.status = status
        self._guard(self.hooks.on_change, state)

    def _guard(self, call: Callable[..., None], *args: Any) -> None:
        """``call(*args)``; a StorageError (results cannot be written) stops the run."""
        try:
            call(*args)
        except StorageError as exc:
            self.failure = self.failure or exc
            self.stop.request()


def _start_nodes(
    ray: ModuleType, slots: list[NodeSlot], run_id: str, first_worker_id: int, fault: str | None
) -> list[_Node]:
    """One NodeCoordinator per node, pinned to it (its workers run there)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(NodeCoordinator)
    nodes = []
    for k, slot in enumerate(slots):
        pinned = NodeAffinitySchedulingStrategy(node_id=slot.node_id, soft=False)
        actor = remote.options(num_cpus=0, max_concurrency=2, scheduling_strategy=pinned).remote(
            run_id, slot.host, slot.capacity, first_worker_id + (k + 1) * WORKER_ID_STRIDE, fault,
            slot.node_id, slot.address,
        )  # fmt: skip
        nodes.append(_Node(actor, slot))
    return nodes


def _said(exc: Exception) -> str:
    """What Ray said, in one line, after the kind of error."""
    said = first_line(exc)
    return said if said == type(exc).__name__ else f"{type(exc).__name__}: {said}"


def _kind(node: NodeEntry) -> tuple[str, str | None, str | None]:
    """What may make a machine's outputs legitimately differ from another's."""
    return node.machine, node.cpu_model, node.mnn_version
