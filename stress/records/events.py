"""Events: worker deaths, hangs, quarantines, interruptions, resizes. THE event schema and
its writer; one typed ``Event`` per row, whose fields are the schema's columns."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from stress.records.parts import PartWriter
from stress.records.schema import FACTOR_FIELDS, HOST_FIELD


class EventKind(str, Enum):
    CRASH = "crash"  # killed by a signal (SIGSEGV, SIGABRT, SIGKILL from the OOM killer, ...)
    HANG = "hang"  # no progress for `timeout`: stacks dumped, then SIGKILL
    # Out of memory: over the scenario's max_rss_mib (SIGKILL: a leak?), OOM-killed in its
    # cgroup (cgroup_memory_max_mib), or a MemoryError outside an iteration
    MEMORY = "memory"
    EXCEPTION = "exception"  # an MNN call raised outside an iteration (loading the model)
    EXIT = "exit"  # a non-zero exit code without last words
    PROTOCOL = "protocol"  # an unreadable record: the worker scribbled on its ring
    HARNESS = "harness"  # an exception in mnn-stress's own code: a bug of ours, not a finding
    QUARANTINE = "quarantine"  # the variant's crash budget is spent
    INTERRUPTED = "interrupted"  # a worker stopped by a SIGTERM from outside, or by the run
    RESIZE = "resize"  # a record did not fit the ring: restarted with a larger one
    # valgrind memcheck saw an invalid read, write or free (memcheck=on): a finding, one event
    # per distinct error with its native stack; the worker itself may have lived on
    MEMCHECK = "memcheck"
    # The native backtrace of an earlier death, read by gdb after that death's event was
    # written (a death is recorded at once; gdb takes seconds): the same variant, worker and
    # pid. Readers fold it into the death's event (``fold_native_stacks``).
    NATIVE_STACK = "native_stack"

    @property
    def is_death(self) -> bool:
        """A death counts against the variant's crash budget and is a finding about MNN."""
        return self in DEATHS


DEATHS = frozenset(
    {
        EventKind.CRASH,
        EventKind.HANG,
        EventKind.MEMORY,
        EventKind.EXCEPTION,
        EventKind.EXIT,
        EventKind.PROTOCOL,
    }
)
DEATH_KINDS = tuple(kind.value for kind in EventKind if kind in DEATHS)  # in declaration order

EVENT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("scenario", pa.string()),
        pa.field("variant_id", pa.string()),
        *FACTOR_FIELDS,
        pa.field("worker_id", pa.int32()),
        pa.field("pid", pa.int32()),
        HOST_FIELD,
        pa.field("ts", pa.timestamp("ns", tz="UTC")),
        pa.field("kind", pa.string()),
        pa.field("iteration", pa.int64()),
        pa.field("in_flight", pa.list_(pa.int64())),
        pa.field("signal", pa.string()),
        pa.field("exit_code", pa.int32()),
        pa.field("message", pa.string()),
        pa.field("stack", pa.string()),
        pa.field("native_stack", pa.string()),
        pa.field("stderr_tail", pa.string()),
    ]
)


@dataclass(frozen=True)
class Event:
    """One row of ``events/``: the field names are EVENT_SCHEMA's (a test checks this), with
    ``params`` spread over the factor columns. ``iteration`` is the iteration in flight (the
    lowest, with several threads); ``in_flight`` has it per thread (null: not in one)."""

    run_id: str
    scenario: str
    variant_id: str
    worker_id: int | None
    pid: int | None
    kind: EventKind
    message: str = ""
    iteration: int | None = None
    signal: str | None = None
    exit_code: int | None = None
    stack: str | None = None
    native_stack: str | None = None  # every thread's backtrace (gdb), or why there is none
    stderr_tail: str | None = None
    mnn_version: str | None = None  # as the worker said in its hello (None: it did not)
    in_flight: list[int | None] | None = None
    params: dict[str, object] | None = None  # the variant's factor values
    ts: int = 0  # ns since the epoch; 0 = now
    host: str | None = None  # None: the writer's (``EventWriter.host``)

    def row(self) -> dict[str, object]:
        row = asdict(self)
        row["kind"] = self.kind.value
        row["ts"] = self.ts or time.time_ns()
        params = row.pop("params") or {}
        # The event's own fields win: its ``mnn_version`` is the one that ran (None: unknown)
        for factor in FACTOR_FIELDS:
            row.setdefault(factor.name, params.get(factor.name))
        return row


EVENT_FIELDS = {f.name for f in fields(Event)} - {"params"} | {f.name for f in FACTOR_FIELDS}
STACK_KEY = ("variant_id", "worker_id", "pid")  # what ties a native_stack event to its death


def native_stack_of(death: Event, stack: str) -> Event:
    """The event that carries ``stack``, read after ``death`` was written."""
    return replace(
        death,
        kind=EventKind.NATIVE_STACK,
        message=f"the native stack of the {death.kind.value} event written before",
        stack=None,
        stderr_tail=None,
        native_stack=stack,
        ts=0,
    )


def fold_native_stacks(table: pa.Table) -> pa.Table:
    """Events as readers see them: each ``native_stack`` event's backtrace put into its death's
    event (same STACK_KEY), and the ``native_stack`` events left out. Needs the ``kind`` and
    STACK_KEY columns to fold; without ``native_stack`` the stack events are only dropped."""
    if "kind" not in table.column_names:
        return table
    is_stack = pc.equal(table["kind"], EventKind.NATIVE_STACK.value)
    if not pc.any(is_stack).as_py():
        return table
    deaths = table.filter(pc.invert(is_stack))
    if "native_stack" not in table.column_names:
        return deaths
    stacks = table.filter(is_stack).select([*STACK_KEY, "native_stack"]).to_pylist()
    read = {tuple(s[k] for k in STACK_KEY): s["native_stack"] for s in stacks}
    keys = deaths.select(list(STACK_KEY)).to_pylist()
    own = deaths["native_stack"].to_pylist()
    folded = [read.get(tuple(k.values()), mine) for k, mine in zip(keys, own)]
    position = deaths.column_names.index("native_stack")
    return deaths.set_column(position, "native_stack", pa.array(folded, pa.string()))


class EventWriter:
    """Events are rare and precious: each is written to its own part file at once. One that
    cannot be written (full disk) is kept, and written by ``retry`` when room is made."""

    def __init__(self, directory: Path, host: str | None = None) -> None:
        """``host``: written into every event that does not name its own."""
        self.parts = PartWriter(directory)
        self.host = host
        self.unwritten: list[Event] = []

    def write(self, event: Event) -> None:
        self.unwritten.append(event if event.host is not None else replace(event, host=self.host))
        self.retry()

    def retry(self) -> None:
        """Write every event not yet on disk; StorageError (kept for the next retry) if not."""
        if self.unwritten:
            self.parts.write(_table(self.unwritten))
            self.unwritten = []


def _table(events: list[Event]) -> pa.Table:
    rows = [event.row() for event in events]
    columns = {}
    for field in EVENT_SCHEMA:
        values = [row[field.name] for row in rows]
        if field.name == "ts":
            columns["ts"] = pa.array(values, pa.int64()).cast(field.type)
        else:
            columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=EVENT_SCHEMA)
