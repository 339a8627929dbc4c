"""THE Parquet schema of iterations, and what the coordinator's row buffer holds per row.

Rows are buffered in the coordinator (``stress.row_buffer``) and written as complete Parquet
part files (``stress.parts``), so ``RUN_DIR/iterations/`` is readable as one dataset at every
instant, even while a run is going or after it was killed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stress.factors import REGISTRY
from stress.statistics import STAT_NAMES

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
    """A segment from its columns: Arrow arrays as they are, anything else converted."""
    return pa.table(
        {
            f.name: column
            if isinstance(column := columns[f.name], pa.Array)
            else pa.array(column, f.type)
            for f in SEGMENT_SCHEMA
        },
        schema=SEGMENT_SCHEMA,
    )
