"""THE Parquet schemas (iterations and events) and the writers that fill them.

Rows are buffered in the coordinator and written as complete Parquet part files (temporary
name, then rename), so ``RUN_DIR/iterations/`` and ``RUN_DIR/events/`` are readable as one
dataset at every instant, even while a run is going or after it was killed.
Digests and statistics are computed here, vectorised per batch, not in the worker's hot loop.
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

EVENT_KINDS = ("crash", "hang", "exception", "exit", "protocol", "quarantine", "interrupted")


@dataclass(frozen=True)
class RowContext:
    """What a worker's rows share: filled once per worker, referenced by every row."""

    values: dict[str, Any]
    output_names: tuple[str, ...]
    max_value_bytes: int


class PartWriter:
    """Writes tables as numbered, complete Parquet files in one dataset directory."""

    def __init__(self, directory: Path, schema: pa.Schema) -> None:
        self.directory = directory
        self.schema = schema
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


class IterationBuffer:
    """Collects decoded iterations and flushes them as one Parquet part per batch."""

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
        self._reset()

    def _reset(self) -> None:
        self.contexts: list[RowContext] = []
        self.context_index: dict[int, int] = {}
        self.columns: dict[str, list[Any]] = {
            k: []
            for k in (
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
                "data",
                "rss_bytes",
            )
        }
        self.bytes = 0
        self.started = time.monotonic()

    def __len__(self) -> int:
        return len(self.columns["context"])

    def add(self, context: RowContext, record: IterationRecord) -> None:
        """One row per output (one row with empty output fields when there is none)."""
        key = id(context)
        if key not in self.context_index:
            self.context_index[key] = len(self.contexts)
            self.contexts.append(context)
        ctx = self.context_index[key]
        outputs = record.outputs or [(None, None, None, None)]
        c = self.columns
        for index, dtype, shape, data in outputs:
            c["context"].append(ctx)
            c["thread"].append(record.thread)
            c["iteration"].append(record.iteration)
            c["ts"].append(record.ts_ns)
            c["latency_ns"].append(record.latency_ns)
            c["rc"].append(record.rc)
            c["status"].append(STATUS_NAMES[record.status])
            c["error"].append(record.error)
            c["output"].append(index)
            c["shape"].append(shape)
            c["dtype"].append(dtype)
            c["data"].append(data)
            c["rss_bytes"].append(record.rss_bytes)
            self.bytes += len(data) if data else 0

    def due(self) -> bool:
        return (
            len(self) >= self.max_rows
            or self.bytes >= self.max_bytes
            or (len(self) > 0 and time.monotonic() - self.started >= self.max_age_s)
        )

    def flush(self) -> None:
        if len(self):
            table = self.to_table()
            self.writer.write(table)
            self.rows_written += table.num_rows
        self._reset()

    def to_table(self) -> pa.Table:
        c = self.columns
        ctx_ids = np.asarray(c["context"], dtype=np.int64)
        columns: dict[str, Any] = {}
        for field in CONTEXT_FIELDS:
            per_context = np.array([x.values.get(field.name) for x in self.contexts], dtype=object)
            columns[field.name] = pa.array(per_context[ctx_ids], type=field.type)
        names = [[*x.output_names] for x in self.contexts]
        caps = [x.max_value_bytes for x in self.contexts]
        data = c["data"]
        columns.update(
            thread=c["thread"],
            iteration=c["iteration"],
            ts=pa.array(c["ts"], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            latency_ns=c["latency_ns"],
            rc=c["rc"],
            status=c["status"],
            error=c["error"],
            output_name=[None if i is None else names[x][i] for x, i in zip(ctx_ids, c["output"])],
            shape=[None if s is None else list(s) for s in c["shape"]],
            dtype=c["dtype"],
            nbytes=[None if d is None else len(d) for d in data],
            digest=[None if d is None else xxhash.xxh3_64_hexdigest(d) for d in data],
            **output_statistics(data, c["dtype"]),
            values=[
                d if d is not None and len(d) <= caps[x] else None for d, x in zip(data, ctx_ids)
            ],
            rss_bytes=c["rss_bytes"],
        )
        return pa.table(
            {
                f.name: pa.array(columns[f.name], f.type)
                if not isinstance(columns[f.name], pa.Array)
                else columns[f.name]
                for f in ITERATION_SCHEMA
            },
            schema=ITERATION_SCHEMA,
        )


def output_statistics(data: list[bytes | None], dtypes: list[str | None]) -> dict[str, pa.Array]:
    """nan/inf counts and min/max/mean over finite values, vectorised over same-sized outputs."""
    n = len(data)
    nan = np.zeros(n, np.int64)
    inf = np.zeros(n, np.int64)
    low, high, mean = (np.full(n, np.nan) for _ in range(3))
    present = np.zeros(n, bool)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (d, dtype) in enumerate(zip(data, dtypes)):
        if d is not None and dtype not in (None, "unknown") and len(d):
            groups.setdefault((dtype, len(d)), []).append(i)
    for (dtype, _), rows in groups.items():
        idx = np.asarray(rows)
        block = np.frombuffer(b"".join(data[i] for i in rows), dtype=dtype).reshape(len(rows), -1)
        finite = np.isfinite(block)
        count = finite.sum(axis=1)
        nan[idx] = np.isnan(block).sum(axis=1) if block.dtype.kind == "f" else 0
        inf[idx] = block.shape[1] - count - nan[idx]
        wide = block.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            low[idx] = np.where(finite, wide, np.inf).min(axis=1)
            high[idx] = np.where(finite, wide, -np.inf).max(axis=1)
            mean[idx] = np.where(finite, wide, 0.0).sum(axis=1) / count
        present[idx] = count > 0
    has_output = np.array([d is not None for d in data], bool)
    return {
        "nan_count": pa.array(nan, mask=~has_output),
        "inf_count": pa.array(inf, mask=~has_output),
        "min": pa.array(low, mask=~present),
        "max": pa.array(high, mask=~present),
        "mean": pa.array(mean, mask=~present),
    }


class EventWriter:
    """Events are rare and precious: each is written to its own part file at once."""

    def __init__(self, directory: Path) -> None:
        self.parts = PartWriter(directory, EVENT_SCHEMA)
        self.count = 0

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
        self.count += 1
