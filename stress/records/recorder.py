"""Where a coordinator's results go: the row buffer and its part files, the events, the
compaction of both, and the disk budget. The coordinator decides what is recorded; the
recorder keeps it durable (rows within about a second), compact and within ``--max-disk``.
Methods that write raise StorageError; the coordinator turns it into the run's failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from stress.errors import StorageError
from stress.records.compaction import Compactor
from stress.records.diskbudget import DiskBudget, DiskStage
from stress.records.events import EVENT_SCHEMA, Event, EventWriter
from stress.records.parts import PartWriter
from stress.records.row_buffer import IterationBuffer
from stress.records.rundir import RunLayout
from stress.records.schema import ITERATION_SCHEMA

FLUSH_S = 0.5  # rows wait at most this long for their part file (then the write itself)


@dataclass(frozen=True)
class Listeners:
    """What the recorder tells its coordinator: a line for the run's log, a change of the
    disk budget's stage for the manifest, that the run must stop (the budget is spent), and
    the rows of each part it wrote (the live grades)."""

    note: Callable[[str], None]
    disk: Callable[[dict[str, object]], None]
    stop: Callable[[], None]
    rows: Callable[[pa.Table], None] = lambda rows: None  # rows just written, as written


class Recorder:
    def __init__(
        self,
        root: Path,
        listeners: Listeners,
        disk: DiskBudget | None = None,
        stopping: Callable[[], bool] = lambda: False,
        host: str | None = None,
        compacting: bool = True,
    ) -> None:
        """``stopping``: true once the run is asked to stop; compaction then gives up (the
        run exits within seconds, whatever its outputs' size; its parts stay as written, and
        the run that finishes it packs them). ``host`` goes into every event; without
        ``compacting`` parts stay as written (a cluster node's, shipped as they are)."""
        self.listeners = listeners
        layout = RunLayout(root)
        self.buffer = IterationBuffer(PartWriter(layout.iterations), max_age_s=FLUSH_S)
        if disk is not None:  # one part may not take more than a small share of the budget
            self.buffer.max_bytes = min(self.buffer.max_bytes, disk.limit // 32)
        self.events = EventWriter(layout.events, host)
        self.compacting = compacting
        self.buffer.writer.write_schema(ITERATION_SCHEMA)
        self.events.parts.write_schema(EVENT_SCHEMA)
        self.disk = disk
        self.store_values = True  # until the disk budget says otherwise
        self.compactor = Compactor(
            {layout.iterations: ITERATION_SCHEMA, layout.events: EVENT_SCHEMA},
            room=disk.room if disk is not None else None,
            cancelled=stopping,
        )

    def flush(self) -> None:
        """Write the buffered rows as one part, and count them against the disk budget."""
        before = self.buffer.writer.bytes_written
        try:
            self._write(self.store_values)
        finally:
            if self.disk is not None:  # between measurements, count what was just written
                self.disk.used += self.buffer.writer.bytes_written - before
                self._obey(self.disk.stage())

    def _write(self, keep_values: bool) -> None:
        written = self.buffer.flush(keep_values=keep_values)
        if written is not None:
            self.listeners.rows(written)

    def write_event(self, event: Event) -> None:
        """Written at once; kept for ``salvage`` when the disk refuses (StorageError)."""
        self.events.write(event)

    def measure_disk(self) -> None:
        if self.disk is not None:
            self._obey(self.disk.measure())

    def compact(self) -> None:
        """Report merges that could not be made and damaged parts set aside; start the next
        merge if one is due."""
        self._report_compaction()
        if self.compacting:
            self.compactor.step()

    def compact_all(self) -> None:
        """After the loop: pack every dataset's parts into a handful of files."""
        if not self.compacting:
            return
        skipped = self.compactor.finish()
        if skipped:
            self.listeners.note(f"compaction: {skipped} merges left undone for lack of room")
        self._report_compaction()

    def _report_compaction(self) -> None:
        for line in self.compactor.take_notes():
            self.listeners.note(line)
        for exc in self.compactor.take_errors():
            self.listeners.note(f"compaction left some parts as they were: {exc.message}")

    def salvage(
        self, make_room: Callable[[], None], failed: bool
    ) -> tuple[int, StorageError | None]:
        """After the loop: write what is still buffered and the events kept back. When the disk
        refuses (or ``failed`` already), ``make_room`` is called and the rows are tried again,
        then without their stored values. Returns the rows still unwritten, and the first error."""
        first: StorageError | None = None
        if failed:
            make_room()
        for keep_values in (self.store_values, self.store_values, False):
            try:
                self._write(keep_values)
                break
            except StorageError as exc:
                first = first or exc
                make_room()
        try:
            self.events.retry()
        except StorageError as exc:
            first = first or exc
        return len(self.buffer), first

    def _obey(self, stage: DiskStage) -> None:
        """Stop storing output values, then stop the run, as the budget fills."""
        disk = self.disk
        assert disk is not None
        if stage is not DiskStage.FULL and self.store_values:
            self.store_values = False
            self.listeners.note(
                f"disk: {disk.describe()} used; output values are no longer stored "
                "(digests and statistics go on)"
            )
            self.listeners.disk({"values_stopped_at": time.time()})
        if stage is DiskStage.STOP and disk.stopped is None:
            disk.stopped = f"the run directory reached {disk.describe()} (--max-disk)"
            self.listeners.note(f"disk: {disk.stopped}; stopping the run")
            disk.release_reserve()
            self.listeners.disk({"stopped_at": time.time()})
            self.listeners.stop()
