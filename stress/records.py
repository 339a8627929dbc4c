"""THE Parquet schema of iterations, and the buffer that fills it.

Rows are buffered in the coordinator and written as complete Parquet part files
(``stress.parts``), so ``RUN_DIR/iterations/`` is readable as one dataset at every instant,
even while a run is going or after it was killed. Digests are computed here and statistics
(``stress.statistics``) vectorised per batch, never in the worker's hot loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from stress.contract.protocol import OBSERVATION_NAMES, STATUS_NAMES, IterationRecord
from stress.factors import REGISTRY
from stress.parts import PartWriter
from stress.statistics import (
    NO_STATS,
    STAT_NAMES,
    as_block,
    block_statistics,
    statistics_columns,
    summable,
)

_ARROW_TYPES = {int: pa.int32(), str: pa.string(), float: pa.float64(), bool: pa.bool_()}
FACTOR_FIELDS = [pa.field(name, _ARROW_TYPES[f.kind]) for name, f in REGISTRY.items()]

# Columns that are the same for every row a worker sends. The factor ``mnn_version`` holds the
# version that really ran (the worker's hello), not the one asked for (``installed``).
CONTEXT_FIELDS = [
    pa.field("run_id", pa.string()),
    pa.field("scenario", pa.string()),
    pa.field("variant_id", pa.string()),
    *FACTOR_FIELDS,
    pa.field("worker_id", pa.int32()),
    pa.field("pid", pa.int32()),
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
        pa.field("observation", pa.string()),
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
        pa.field("available_bytes", pa.int64()),
    ]
)


@dataclass(frozen=True)
class RowContext:
    """What a worker's rows share: filled once per worker, referenced by every row."""

    values: dict[str, Any]
    output_names: tuple[str, ...]
    max_value_bytes: int


# Per-row columns filled as records arrive, in schema order; the rest come from the context
# (once per worker) or are computed at the flush (output names, statistics).
CONTEXT_NAMES = tuple(f.name for f in CONTEXT_FIELDS)
COMPUTED_NAMES = ("output_name", *STAT_NAMES)
ROW_NAMES = tuple(f.name for f in ITERATION_SCHEMA if f.name not in CONTEXT_NAMES + COMPUTED_NAMES)
# Held per row until the flush: which context, which output, bytes kept for statistics.
_HELD = ("context", "output", "data", "stats")
# The order ``add`` builds each row in: every held and per-row column exactly once.
_ROW_ORDER = (
    *("context", "thread", "iteration", "ts", "output", "dtype", "shape"),
    *("nbytes", "digest", "values", "data", "stats"),
    *("latency_ns", "rc", "status", "observation", "error", "rss_bytes", "available_bytes"),
)
if sorted(_ROW_ORDER) != sorted(_HELD + ROW_NAMES):
    raise ImportError(f"records: row order {_ROW_ORDER} does not match the schema {ROW_NAMES}")


# Outputs up to this size keep their bytes until the flush, for vectorised statistics.
BATCH_STATISTICS_BYTES = 64 << 10


class IterationBuffer:
    """Collects decoded iterations and flushes them as one Parquet part per batch.

    Each output is hashed on arrival. Small outputs keep their bytes until the flush, where
    their statistics are computed in one vectorised pass; larger ones get their statistics at
    once and their bytes are dropped (unless stored), so buffered memory stays bounded. A flush
    that cannot be written (StorageError) keeps its rows for the next attempt.
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
        self.rows_written = 0
        self.available_bytes: int | None = None  # the system's, set by the caller as it goes
        self._reset()

    def _reset(self) -> None:
        self.contexts: list[RowContext] = []
        self.context_index: dict[int, int] = {}
        self.columns: dict[str, list[Any]] = {name: [] for name in _ROW_ORDER}
        self._appends = [self.columns[name].append for name in _ROW_ORDER]
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
        head = (self.context_index[key], record.thread, record.iteration, record.ts_ns)
        status = STATUS_NAMES[record.status]
        observation = OBSERVATION_NAMES[record.observation]
        tail = (record.latency_ns, record.rc, status, observation, record.error, record.rss_bytes)
        tail += (self.available_bytes,)
        rows = [
            (*head, index, dtype, shape, *self._output(context, dtype, data), *tail)
            for index, dtype, shape, data in record.outputs or [(None, None, None, None)]
        ]
        for row in rows:
            for column, value in zip(self._appends, row):
                column(value)

    def _output(self, context: RowContext, dtype: str | None, data: Any) -> tuple:
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

    def flush(self, keep_values: bool = True) -> None:
        """Write the buffered rows as one part. On StorageError the rows stay buffered;
        ``keep_values=False`` writes them without stored values (a smaller last resort)."""
        if len(self):
            self.writer.write(self.to_table(keep_values))
            self.rows_written += len(self)
        self._reset()

    def to_table(self, keep_values: bool = True) -> pa.Table:
        c = self.columns
        ctx_ids = np.asarray(c["context"], dtype=np.int64)
        columns: dict[str, Any] = {name: c[name] for name in ROW_NAMES}
        for name in CONTEXT_NAMES:
            per_context = np.array([x.values[name] for x in self.contexts], dtype=object)
            columns[name] = per_context[ctx_ids]
        names = [x.output_names for x in self.contexts]
        columns["output_name"] = [
            None if i is None else names[x][i] for x, i in zip(ctx_ids, c["output"])
        ]
        columns["ts"] = pa.array(c["ts"], pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
        columns["shape"] = [None if s is None else list(s) for s in c["shape"]]
        if not keep_values:
            columns["values"] = [None] * len(self)
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
