"""The coordinator's row buffer: decoded iterations in, one complete Parquet part per flush out.

Records come as batches of one layout (``add_batch``, the usual case: held as the ring handed
them over and turned into columns at the flush, ``stress.records.batch_columns``) or one at a time
(``add``: errors, layout changes, short runs; rows built in Python lists). Each worker's rows
keep their order; a part holds the workers one after another. Digests and statistics
(``stress.records.statistics``) are computed here, vectorised, never in the worker's hot loop.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stress.contract.protocol import OBSERVATION_NAMES, STATUS_NAMES, IterationRecord
from stress.records.batch_columns import HeldBatch, batches_segment, same_layout_runs
from stress.records.iteration_batch import IterationBatch
from stress.records.parts import PartWriter, dictionary_schema
from stress.records.schema import (
    CONTEXT_FIELDS,
    CONTEXT_NAMES,
    ITERATION_SCHEMA,
    ROW_NAMES,
    RowContext,
    segment_table,
)
from stress.records.statistics import (
    NO_STATS,
    as_block,
    block_statistics,
    digest,
    statistics_columns,
    summable,
)

# Held per row until the flush: which output, bytes kept for statistics, statistics.
_HELD = ("output", "data", "stats")
# The order ``RecordRows.add`` builds each row in: every held and per-row column exactly once.
_ROW_ORDER = (
    *("thread", "iteration", "ts", "output", "dtype", "shape"),
    *("nbytes", "digest", "values", "data", "stats"),
    *("latency_ns", "rc", "status", "observation", "error", "rss_bytes", "available_bytes"),
)
if sorted(_ROW_ORDER) != sorted(_HELD + ROW_NAMES):
    raise ImportError(f"row_buffer: row order {_ROW_ORDER} does not match the schema {ROW_NAMES}")

# A flush of this much output hands the memory its write took back to the system (Arrow's
# allocator keeps it otherwise: a 256 MiB output stored as values left 1 GiB behind).
RELEASE_AFTER_BYTES = 64 << 20
# Outputs up to this size keep their bytes until the flush, for vectorised statistics.
BATCH_STATISTICS_BYTES = 64 << 10
# What a flush writes: the Parquet schema, with what is the same for a worker's every row (its
# context, its output names) as dictionaries. Parts carry no Arrow schema, so readers see the
# plain types (``stress.records.parts.write_options``).
STORED_SCHEMA = dictionary_schema(ITERATION_SCHEMA, [*CONTEXT_NAMES, "output_name"])


class RecordRows:
    """One worker's rows added one record at a time, as Python lists until the flush.

    Each output is hashed on arrival. Small outputs keep their bytes until the flush, where
    their statistics are computed in one vectorised pass; larger ones get their statistics at
    once and their bytes are dropped (unless stored), so buffered memory stays bounded."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in _ROW_ORDER}
        self._appends = [self.columns[name].append for name in _ROW_ORDER]
        self.rows = 0
        self.held_bytes = 0

    def add(self, context: RowContext, record: IterationRecord, available: int | None) -> int:
        """One row per output (one row with empty output fields when there is none); returns
        the rows added. Rows are built in full before any column grows, so a bad record cannot
        misalign the columns."""
        head = (record.thread, record.iteration, record.ts_ns)
        status = STATUS_NAMES[record.status]
        observation = OBSERVATION_NAMES[record.observation]
        tail = (record.latency_ns, record.rc, status, observation, record.error, record.rss_bytes)
        tail += (available,)
        rows = [
            (*head, index, dtype, shape, *self._output(context, dtype, data), *tail)
            for index, dtype, shape, data in record.outputs or [(None, None, None, None)]
        ]
        for row in rows:
            for column, value in zip(self._appends, row):
                column(value)
        self.rows += len(rows)
        return len(rows)

    def _output(self, context: RowContext, dtype: str | None, data: Any) -> tuple:
        """nbytes, digest, stored values, bytes kept for batch statistics, statistics."""
        if data is None:
            return None, None, None, None, NO_STATS
        size = len(data)
        values = data if size <= context.max_value_bytes else None
        if values is not None or size <= BATCH_STATISTICS_BYTES:
            self.held_bytes += size  # held until the flush
        if size <= BATCH_STATISTICS_BYTES:
            return size, digest(data), values, data, None  # statistics at the flush
        stats = NO_STATS
        if summable(dtype, size):
            stats = tuple(column[0] for column in block_statistics(as_block([data], dtype)))
        return size, digest(data), values, None, stats

    def segment(self, context_id: int) -> pa.Table:
        c = self.columns
        columns: dict[str, Any] = {name: c[name] for name in ("output", *ROW_NAMES)}
        columns["context"] = np.full(self.rows, context_id, np.int32)
        columns["ts"] = pa.array(c["ts"], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
        columns["shape"] = [None if s is None else list(s) for s in c["shape"]]
        columns.update(statistics_columns(c["stats"], c["data"], c["dtype"]))
        return segment_table(columns)


class IterationBuffer:
    """Collects decoded iterations and flushes them as one Parquet part at a time, when
    ``due``: enough rows, enough bytes held, or old enough. A flush that cannot be written
    (StorageError) keeps its rows for the next attempt."""

    def __init__(
        self,
        writer: PartWriter,
        max_rows: int = 100_000,
        max_bytes: int = 64 << 20,
        max_age_s: float = 5.0,
    ) -> None:
        self.writer = writer
        self.max_rows, self.max_bytes, self.max_age_s = max_rows, max_bytes, max_age_s
        self.rows_written = 0
        self.available_bytes: int | None = None  # the system's, set by the caller as it goes
        self._reset()

    def _reset(self) -> None:
        self.contexts: list[RowContext] = []
        self.context_index: dict[int, int] = {}
        self.pending: list[list[RecordRows | HeldBatch]] = []  # per context, in arrival order
        self.rows = 0
        self.bytes = 0  # held until the flush: output bytes, stored or kept for statistics
        self.started = time.monotonic()

    def __len__(self) -> int:
        return self.rows

    def _items(self, context: RowContext) -> list[RecordRows | HeldBatch]:
        key = id(context)
        if key not in self.context_index:
            self.context_index[key] = len(self.contexts)
            self.contexts.append(context)
            self.pending.append([])
        return self.pending[self.context_index[key]]

    def add(self, context: RowContext, record: IterationRecord) -> None:
        items = self._items(context)
        if not items or not isinstance(items[-1], RecordRows):
            items.append(RecordRows())
        rows = items[-1]
        before = rows.held_bytes
        self.rows += rows.add(context, record, self.available_bytes)
        self.bytes += rows.held_bytes - before

    def add_batch(self, context: RowContext, batch: IterationBatch) -> None:
        held = HeldBatch(batch, self.available_bytes)
        self._items(context).append(held)
        self.rows += held.rows
        self.bytes += len(batch.data)

    def due(self) -> bool:
        return (
            len(self) >= self.max_rows
            or self.bytes >= self.max_bytes
            or (len(self) > 0 and time.monotonic() - self.started >= self.max_age_s)
        )

    def flush(self, keep_values: bool = True) -> pa.Table | None:
        """Write the buffered rows as one part and return them (None: there were none). On
        StorageError the rows stay buffered; ``keep_values=False`` writes them without stored
        values (a smaller last resort)."""
        written = None
        if len(self):
            written = self.to_table(keep_values)
            self.writer.write(written)
            self.rows_written += len(self)
        held = self.bytes
        self._reset()
        if held >= RELEASE_AFTER_BYTES:  # the writer's buffers, a few times what was held
            pa.default_memory_pool().release_unused()
        return written

    def to_table(self, keep_values: bool = True) -> pa.Table:
        """Every buffered row: the context columns and output names filled in by index, as
        dictionaries (``STORED_SCHEMA``: the Parquet schema's types, encoded once per value)."""
        rows = pa.concat_tables(self._segments())  # chunked: the writer needs no single copy
        context = rows["context"].combine_chunks()
        columns: dict[str, Any] = {
            f.name: _by_context(context, [x.values[f.name] for x in self.contexts], f.type)
            for f in CONTEXT_FIELDS
        }
        first_name = np.cumsum([0] + [len(x.output_names) for x in self.contexts[:-1]])
        names = pa.array([name for x in self.contexts for name in x.output_names], pa.string())
        name_index = pc.add(pa.array(first_name, pa.int32()).take(context), rows["output"])
        columns["output_name"] = pa.DictionaryArray.from_arrays(
            name_index.combine_chunks().cast(pa.int32()), names
        )
        if not keep_values:
            columns["values"] = pa.nulls(rows.num_rows, pa.binary())
        return pa.table(
            {f.name: columns[f.name] if f.name in columns else rows[f.name] for f in STORED_SCHEMA},
            schema=STORED_SCHEMA,
        )

    def _segments(self) -> list[pa.Table]:
        """Per context, its rows in arrival order: runs of held batches joined."""
        segments = []
        for context_id, items in enumerate(self.pending):
            context, start = self.contexts[context_id], 0
            while start < len(items):
                end = start + 1
                if isinstance(items[start], RecordRows):
                    segments.append(items[start].segment(context_id))
                else:
                    while end < len(items) and isinstance(items[end], HeldBatch):
                        end += 1
                    for group in same_layout_runs(items[start:end]):  # type: ignore[arg-type]
                        segments.append(batches_segment(context_id, context, group))
                start = end
        return segments


def _by_context(context: pa.Array, values: list[Any], kind: pa.DataType) -> pa.DictionaryArray:
    """A context column: each row's context's value, as a dictionary of the distinct values
    (a context whose value is None gives null rows: dictionaries hold no nulls)."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    code = {value: k for k, value in enumerate(distinct)}
    per_context = pa.array([code.get(v) for v in values], pa.int32())
    return pa.DictionaryArray.from_arrays(per_context.take(context), pa.array(distinct, kind))
