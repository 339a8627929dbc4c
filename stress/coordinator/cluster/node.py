"""One node's side of a cluster run: a coordinator of its own over the variants the driver
gives it, its workers local OS processes as on one machine (a segfault kills a worker, never
the Ray actor). What it records goes to a scratch run directory on the node, part by part as
written (never packed there), and leaves with the next ``collect``: the driver writes it into
the run directory. ``NodeCoordinator`` is a plain class; the driver
(``stress.coordinator.cluster.driver``) makes it a Ray actor, one per node.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from stress.coordinator.cluster.shipment import Shipment, VariantProgress
from stress.coordinator.loop import Coordinator, Hooks, Site, StopRequests
from stress.coordinator.plan import VariantState
from stress.records.manifest_sections import NodeEntry
from stress.records.nodes import fingerprint
from stress.records.parts import listed
from stress.records.rundir import RunDir, RunLayout
from stress.records.states import VariantStatus

SCRATCH_PREFIX = "mnn-stress-node-"  # under the node's temporary folder
OWNER = "OWNER"  # in a scratch folder: the pid of the coordinator's process


@dataclass
class _Inbox:
    """The variants given and not yet taken, and whether more may come (the Feed)."""

    waiting: collections.deque[VariantState] = field(default_factory=collections.deque)
    closed: bool = False

    def take(self, count: int) -> list[VariantState]:
        taken = []
        while self.waiting and len(taken) < count:
            taken.append(self.waiting.popleft())
        return taken

    def open(self) -> bool:
        return bool(self.waiting) or not self.closed


class NodeCoordinator:
    """Runs, in a thread of the actor, a coordinator fed by ``give``; ``collect`` hands over
    what was recorded and how its variants stand since the last call."""

    def __init__(
        self,
        run_id: str,
        host: str,
        concurrency: int,
        first_worker_id: int,
        fault: str | None,
        ray_node_id: str | None = None,
        address: str | None = None,
    ) -> None:
        self.host = host
        self.ray_node_id, self.address = ray_node_id, address
        _sweep(Path(tempfile.gettempdir()))
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{run_id}-"))
        (self.scratch / OWNER).write_text(str(os.getpid()))
        self.run_dir = RunDir.create(self.scratch / "run")
        self.layout = RunLayout(self.run_dir.path)
        self.inbox = _Inbox()
        self.stop = StopRequests()
        self.lock = threading.Lock()
        self.progress: dict[str, VariantProgress] = {}
        self.notes: list[str] = []
        self.failure: str | None = None
        self.finished = False
        hooks = Hooks(
            on_change=self._changed,
            on_progress=lambda states: [self._changed(s) for s in states],
            on_note=self._note,
        )
        site = Site(host=host, feed=self.inbox, compacting=False)
        self.coordinator = Coordinator(
            run_id, self.run_dir.path, [], concurrency, self.stop, fault, hooks,
            first_worker_id, site=site,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._run, name="node-coordinator", daemon=True)
        self.thread.start()

    def node(self) -> NodeEntry:
        """This node's fingerprint, under the host name its rows carry."""
        return fingerprint(self.host, self.ray_node_id, self.address)

    def collect(self, give: list[VariantState], close: bool, stops: int) -> Shipment:
        """Take the variants in ``give``; with ``close`` no more will come (the coordinator
        ends when its last one does); ``stops``: the stop requests so far (as Ctrl-C: the first
        stops the workers gracefully, a second kills them). Then hand over the parts written
        since the last call (removed here), the variants' progress, the notes for the run's
        log, and whether the coordinator has ended."""
        self.inbox.waiting.extend(give)
        self.inbox.closed = self.inbox.closed or close
        while self.stop.count < stops:
            self.stop.request()
        with self.lock:
            progress, self.progress = list(self.progress.values()), {}
            notes, self.notes = self.notes, []
            finished = self.finished
        waiting = len(self.inbox.waiting)
        running = len(self.coordinator.running)
        iterations, events = (_take_parts(d) for d in (self.layout.iterations, self.layout.events))
        logs = _take_logs(self.layout.logs) if finished else []  # no worker writes them now
        return Shipment(
            self.host, iterations, events, progress, notes, running, waiting, finished,
            self.failure, logs,
        )  # fmt: skip

    def shut(self) -> None:
        """After the last collect: the scratch directory goes."""
        self.run_dir.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _run(self) -> None:
        coordinator = self.coordinator
        try:
            coordinator.run()
            coordinator.lost_rows = coordinator.salvage(lambda: None)
            if coordinator.failure is not None:
                self.failure = coordinator.failure.render()
        except Exception:  # noqa: BLE001 - said to the driver: a bug of ours on this node
            self.failure = f"mnn-stress's node coordinator failed:\n{traceback.format_exc()}"
        never = self.inbox.take(len(self.inbox.waiting))  # given, but the run stopped first
        for state in never:
            state.status = VariantStatus.SKIPPED
        with self.lock:
            for state in [*coordinator.states, *never]:
                self.progress[state.variant.variant_id] = VariantProgress.of(state)
            self.finished = True

    def _changed(self, state: VariantState) -> None:
        with self.lock:
            self.progress[state.variant.variant_id] = VariantProgress.of(state)

    def _note(self, line: str) -> None:
        with self.lock:
            self.notes.append(f"{self.host}: {line}")


def _take_logs(directory: Path) -> list[tuple[str, bytes]]:
    """Every worker's log (name, content), removed once read."""
    taken = []
    for path in sorted(directory.glob("*.log")):
        taken.append((path.name, path.read_bytes()))
        path.unlink()
    return taken


def _sweep(scratch_root: Path) -> None:
    """Scratch folders of node coordinators that are gone (a node lost, a driver killed):
    each names its owner's pid in ``OWNER``."""
    for folder in scratch_root.glob(f"{SCRATCH_PREFIX}*"):
        try:
            owner = int((folder / OWNER).read_text())
        except (OSError, ValueError):
            continue  # being made, or not ours
        if not psutil.pid_exists(owner):
            shutil.rmtree(folder, ignore_errors=True)


def _take_parts(directory: Path) -> list[bytes]:
    """Every complete part in ``directory``, oldest first, removed once read."""
    taken = []
    for part in listed(directory):
        taken.append(part.path.read_bytes())
        part.path.unlink()
    return taken
