"""THE Parquet schemas (iterations and events) and the writers that fill them.

Rows are buffered in the coordinator and written as complete Parquet part files (temporary
name, then rename), so ``RUN_DIR/iterations/`` and ``RUN_DIR/events/`` are readable as one
dataset at every instant, even while a run is going or after it was killed.
Digests are computed here and statistics (``stress.statistics``) vectorised per batch, never in
the worker's hot loop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from stress.factors import REGISTRY
from stress.protocol import STATUS_NAMES, IterationRecord
from stress.statistics import NO_STATS, as_block, block_statistics, statistics_columns, summable

_ARROW_TYPES = {int: pa.int32(), str: pa.string(), float: pa.float64(), bool: pa.bool_()}
FACTOR_FIELDS = [pa.field(name, _ARROW_TYPES[f.kind]) for name, f in REGISTRY.items()]

# Columns that are the same for every row a worker sends.
CONTEXT_FIELDS = [
    pa.field("run_id", pa.string()),
    pa.field("scenario", pa.string()),
    pa.field("variant_id", pa.string()),
    *FACTOR_FIELDS,
    pa.field("worker_id", pa.int32()),
    pa.field("pid", pa.int32()),
    pa.field("mnn_version", pa.string()),
]

ITERATION_SCHEMA = pa.schema(
    [
        *CONTEXT_FIELDS,
        pa.field("thread", pa.int16()),
        pa.field("iteration", pa.int64()),
        pa.field("ts", pa.timestamp("ns", tz="UTC")),
        pa.field("latency_ns", pa.int64()),
        pa.field("rc", pa.int32()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("output_name", pa.string()),
        pa.field("shape", pa.list_(pa.int64())),
        pa.field("dtype", pa.string()),
        pa.field("nbytes", pa.int64()),
        pa.field("digest", pa.string()),
        pa.field("nan_count", pa.int64()),
        pa.field("inf_count", pa.int64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("mean", pa.float64()),
        pa.field("values", pa.binary()),
        pa.field("rss_bytes", pa.int64()),
    ]
)

EVENT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("scenario", pa.string()),
        pa.field("variant_id", pa.string()),
        pa.field("worker_id", pa.int32()),
        pa.field("pid", pa.int32()),
        pa.field("ts", pa.timestamp("ns", tz="UTC")),
        pa.field("kind", pa.string()),
        pa.field("iteration", pa.int64()),
        pa.field("signal", pa.string()),
        pa.field("exit_code", pa.int32()),
        pa.field("message", pa.string()),
        pa.field("stack", pa.string()),
        pa.field("stderr_tail", pa.string()),
        pa.field("mnn_version", pa.string()),
    ]
)


@dataclass(frozen=True)
class RowContext:
    """What a worker's rows share: filled once per worker, referenced by every row."""

    values: dict[str, Any]
    output_names: tuple[str, ...]
    max_value_bytes: int


class PartWriter:
    """Writes tables as numbered, complete Parquet files in one dataset directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.sequence = len(list(directory.glob("part-*.parquet")))

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        final = self.directory / f"part-{self.sequence:06d}.parquet"
        temporary = final.with_suffix(".tmp")
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, final)
        self.sequence += 1


_BUFFERED = (
    "context",
    "thread",
    "iteration",
    "ts",
    "latency_ns",
    "rc",
    "status",
    "error",
    "output",
    "shape",
    "dtype",
    "nbytes",
    "digest",
    "values",
    "data",
    "stats",
    "rss_bytes",
)


# Outputs up to this size keep their bytes until the flush, for vectorised statistics.
BATCH_STATISTICS_BYTES = 64 << 10


class IterationBuffer:
    """Collects decoded iterations and flushes them as one Parquet part per batch.

    Each output is hashed on arrival. Small outputs keep their bytes until the flush, where
    their statistics are computed in one vectorised pass; larger ones get their statistics at
    once and their bytes are dropped (unless stored), so buffered memory stays bounded.
    """

    def __init__(
        self,
        writer: PartWriter,
        max_rows: int = 100_000,
        max_bytes: int = 64 << 20,
        max_age_s: float = 5.0,
    ) -> None:
        self.writer = writer
        self.max_rows, self.max_bytes, self.max_age_s = max_rows, max_bytes, max_age_s
        self._reset()

    def _reset(self) -> None:
        self.contexts: list[RowContext] = []
        self.context_index: dict[int, int] = {}
        self.columns: dict[str, list[Any]] = {name: [] for name in _BUFFERED}
        self.bytes = 0
        self.started = time.monotonic()

    def __len__(self) -> int:
        return len(self.columns["context"])

    def add(self, context: RowContext, record: IterationRecord) -> None:
        """One row per output (one row with empty output fields when there is none). Rows are
        built in full before any column grows, so a bad record cannot misalign the columns."""
        key = id(context)
        if key not in self.context_index:
            self.context_index[key] = len(self.contexts)
            self.contexts.append(context)
        ctx = self.context_index[key]
        status = STATUS_NAMES[record.status]
        rows = [
            (
                ctx,
                record.thread,
                record.iteration,
                record.ts_ns,
                record.latency_ns,
                record.rc,
                status,
                record.error,
                index,
                shape,
                dtype,
                *self._output(context, dtype, data),
                record.rss_bytes,
            )
            for index, dtype, shape, data in record.outputs or [(None, None, None, None)]
        ]
        for row in rows:
            for column, value in zip(self.columns.values(), row):
                column.append(value)

    def _output(self, context: RowContext, dtype: str | None, data: bytes | None) -> tuple:
        """nbytes, digest, stored values, bytes kept for batch statistics, statistics."""
        if data is None:
            return None, None, None, None, NO_STATS
        size = len(data)
        digest = xxhash.xxh3_64_hexdigest(data)
        values = data if size <= context.max_value_bytes else None
        if values is not None or size <= BATCH_STATISTICS_BYTES:
            self.bytes += size  # held until the flush: counts towards max_bytes
        if size <= BATCH_STATISTICS_BYTES:
            return size, digest, values, data, None  # statistics with its batch at the flush
        stats = NO_STATS
        if summable(dtype, size):
            stats = tuple(column[0] for column in block_statistics(as_block([data], dtype)))
        return size, digest, values, None, stats

    def due(self) -> bool:
        return (
            len(self) >= self.max_rows
            or self.bytes >= self.max_bytes
            or (len(self) > 0 and time.monotonic() - self.started >= self.max_age_s)
        )

    def flush(self) -> None:
        if len(self):
            self.writer.write(self.to_table())
        self._reset()

    def to_table(self) -> pa.Table:
        c = self.columns
        ctx_ids = np.asarray(c["context"], dtype=np.int64)
        columns: dict[str, Any] = {}
        for field in CONTEXT_FIELDS:
            per_context = np.array([x.values.get(field.name) for x in self.contexts], dtype=object)
            columns[field.name] = per_context[ctx_ids]
        names = [x.output_names for x in self.contexts]
        columns.update(
            {
                name: c[name]
                for name in (
                    "thread",
                    "iteration",
                    "latency_ns",
                    "rc",
                    "status",
                    "error",
                    "dtype",
                    "nbytes",
                    "digest",
                    "values",
                    "rss_bytes",
                )
            }
        )
        columns["ts"] = pa.array(c["ts"], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
        columns["output_name"] = [
            None if i is None else names[x][i] for x, i in zip(ctx_ids, c["output"])
        ]
        columns["shape"] = [None if s is None else list(s) for s in c["shape"]]
        columns.update(statistics_columns(c["stats"], c["data"], c["dtype"]))
        return pa.table(
            {
                f.name: columns[f.name]
                if isinstance(columns[f.name], pa.Array)
                else pa.array(columns[f.name], f.type)
                for f in ITERATION_SCHEMA
            },
            schema=ITERATION_SCHEMA,
        )


class EventWriter:
    """Events are rare and precious: each is written to its own part file at once."""

    def __init__(self, directory: Path) -> None:
        self.parts = PartWriter(directory)

    def write(self, **event: Any) -> None:
        columns = {
            f.name: pa.array([event.get(f.name)], f.type) for f in EVENT_SCHEMA if f.name != "ts"
        }
        columns["ts"] = pa.array([event.get("ts") or time.time_ns()], pa.int64()).cast(
            pa.timestamp("ns", tz="UTC")
        )
        self.parts.write(
            pa.table({f.name: columns[f.name] for f in EVENT_SCHEMA}, schema=EVENT_SCHEMA)
        )
