"""THE Parquet schema of iterations, and what the coordinator's row buffer holds per row.

Rows are buffered in the coordinator (``stress.records.row_buffer``) and written as complete Parquet
part files (``records.parts``), so ``RUN_DIR/iterations/`` is readable as one dataset at every
instant, even while a run is going or after it was killed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from stress.factors import REGISTRY
from stress.records.statistics import STAT_NAMES

_BINARY_LIMIT = (1 << 31) - 1  # the most bytes one binary array holds (32-bit offsets)
_ARROW_TYPES = {int: pa.int32(), str: pa.string(), float: pa.float64(), bool: pa.bool_()}
FACTOR_FIELDS = [pa.field(name, _ARROW_TYPES[f.kind]) for name, f in REGISTRY.items()]

# The machine a row or event comes from: the host name, made unique among a cluster's nodes
# (``stress.coordinator.cluster``); the manifest's ``nodes`` has each one's fingerprint.
HOST_FIELD = pa.field("host", pa.string())

# Columns that are the same for every row a worker sends. The factor ``mnn_version`` holds the
# version that really ran (the worker's hello), not the one asked for (``installed``).
CONTEXT_FIELDS = [
    pa.field("run_id", pa.string()),
    pa.field("scenario", pa.string()),
    pa.field("variant_id", pa.string()),
    *FACTOR_FIELDS,
    pa.field("worker_id", pa.int32()),
    pa.field("pid", pa.int32()),
    HOST_FIELD,
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

# What the row buffer holds until a flush: rows without their context columns (a context index
# and an output index stand for them), in segments that the flush joins.
SEGMENT_SCHEMA = pa.schema(
    [
        pa.field("context", pa.int32()),
        pa.field("output", pa.int16()),
        *(f for f in ITERATION_SCHEMA if f.name not in CONTEXT_NAMES + ("output_name",)),
    ]
)


def segment_table(columns: dict[str, Any]) -> pa.Table:
    """A segment from its columns: Arrow arrays as they are, anything else converted (bytes
    columns by ``binary_array``)."""
    return pa.table(
        {f.name: _as_arrow(columns[f.name], f.type) for f in SEGMENT_SCHEMA},
        schema=SEGMENT_SCHEMA,
    )


def _as_arrow(column: Any, kind: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(column, pa.Array):
        return column
    return binary_array(column) if pa.types.is_binary(kind) else pa.array(column, kind)


def binary_array(values: Sequence[bytes | memoryview | None]) -> pa.Array | pa.ChunkedArray:
    """A binary column from bytes-like values (None is null), each copied once. Not
    ``pa.array``: pyarrow leaks every memoryview it converts, and with it the whole drained
    run the view points into (16 MiB an iteration for a big output). Chunked where the values
    pass binary's 32-bit offsets."""
    chunks, start, size = [], 0, 0
    for end, value in enumerate(values):
        length = 0 if value is None else len(value)
        if size + length > _BINARY_LIMIT and end > start:
            chunks.append(_binary_chunk(values[start:end]))
            start, size = end, 0
        size += length
    chunks.append(_binary_chunk(values[start:]))
    return chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks, pa.binary())


def _binary_chunk(values: Sequence[bytes | memoryview | None]) -> pa.Array:
    lengths = np.fromiter((0 if v is None else len(v) for v in values), np.int64, len(values))
    offsets = np.zeros(len(values) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:], dtype=np.int32)
    nulls = np.fromiter((v is None for v in values), bool, len(values))
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if nulls.any() else None
    data = pa.py_buffer(b"".join(v for v in values if v is not None))
    return pa.Array.from_buffers(
        pa.binary(), len(values), [validity, pa.py_buffer(offsets), data], null_count=-1
    )
