"""Iteration batches turned into row columns: one row per record and output, in order.

Batches are held as the ring handed them over until the flush. Then each run of consecutive
batches of one worker with one layout becomes one segment: digests, statistics and values are
computed batch by batch (a few numpy calls each, no copy of the records), and the resulting
per-row arrays are joined, so Arrow's per-column costs are paid once per flush. Joining the
records themselves first would copy every output once more into fresh memory, which on a VM
costs more in page faults than the copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from stress.contract.protocol import OBSERVATION_NAMES, STATUS_NAMES
from stress.records.iteration_batch import HEAD_FIELDS, IterationBatch, OutputBlock
from stress.records.schema import RowContext, segment_table
from stress.records.statistics import STAT_NAMES, block_statistic_arrays, summable

_STATUS_LABELS = pa.array(STATUS_NAMES, pa.string())
_OBSERVATION_LABELS = pa.array(OBSERVATION_NAMES, pa.string())


@dataclass(frozen=True)
class HeldBatch:
    """A batch waiting for the flush, and the system's available memory when it arrived."""

    batch: IterationBatch
    available_bytes: int | None

    @property
    def rows(self) -> int:
        return len(self.batch) * len(self.batch.outputs)


def same_layout_runs(held: list[HeldBatch]) -> Iterator[list[HeldBatch]]:
    """Consecutive held batches, grouped while their layout (stride and outputs) stays one."""
    start = 0
    while start < len(held):
        first, end = held[start].batch, start + 1
        while end < len(held) and (held[end].batch.stride, held[end].batch.outputs) == (
            first.stride,
            first.outputs,
        ):
            end += 1
        yield held[start:end]
        start = end


def batches_segment(context_id: int, context: RowContext, group: list[HeldBatch]) -> pa.Table:
    """The rows of batches sharing one layout, one per record and output, in order
    (SEGMENT_SCHEMA)."""
    blocks = group[0].batch.outputs
    records = sum(len(h.batch) for h in group)
    per_output = np.tile(np.arange(len(blocks)), records)  # each row's position in blocks
    field = {name: np.concatenate([h.batch.head[name] for h in group]) for name, *_ in HEAD_FIELDS}
    available = np.repeat(
        [-1 if h.available_bytes is None else h.available_bytes for h in group],
        [len(h.batch) for h in group],
    )

    def each_output(column: np.ndarray) -> np.ndarray:  # a record's value on each of its rows
        return np.repeat(column, len(blocks)) if len(blocks) > 1 else column

    known = each_output(available)
    columns: dict[str, Any] = {
        "context": np.full(len(per_output), context_id, np.int32),
        "output": np.array([b.index for b in blocks], np.int16)[per_output],
        "thread": each_output(field["thread"]).astype(np.int16),
        "iteration": each_output(field["iteration"]),
        "ts": pa.array(each_output(field["ts_ns"]), pa.timestamp("ns", tz="UTC")),
        "latency_ns": each_output(field["latency_ns"]),
        "rc": each_output(field["rc"]),
        "status": _STATUS_LABELS.take(each_output(field["status"])),
        "observation": _OBSERVATION_LABELS.take(each_output(field["observation"])),
        "error": pa.nulls(len(per_output), pa.string()),
        "dtype": pa.array([b.dtype for b in blocks], pa.string()).take(per_output),
        "shape": pa.array([list(b.shape) for b in blocks], pa.list_(pa.int64())).take(per_output),
        "nbytes": np.array([b.nbytes for b in blocks], np.int64)[per_output],
        "rss_bytes": each_output(field["rss_bytes"]),
        "available_bytes": pa.array(known, pa.int64(), mask=known < 0),
        "digest": _interleave([_digests(group, block) for block in blocks], records),
        "values": _values(group, records, context.max_value_bytes),
        **_statistics(group, records),
    }
    return segment_table(columns)


def _interleave(per_output: list[pa.Array], records: int) -> pa.Array:
    """Per-output columns as one column in row order (record by record, output by output)."""
    if len(per_output) == 1:
        return per_output[0]
    rows = np.arange(records * len(per_output)).reshape(len(per_output), records)
    return pa.concat_arrays(per_output).take(rows.T.ravel())


def _digests(group: list[HeldBatch], block: OutputBlock) -> pa.Array:
    """One output's digest column: each batch's distinct digests, spread over its records."""
    distinct: list[str] = []
    which = []
    for held in group:
        digests, index = held.batch.output_digests(block)
        which.append(index + len(distinct))
        distinct += digests
    return pa.array(distinct, pa.string()).take(np.concatenate(which))


def _statistics(group: list[HeldBatch], records: int) -> dict[str, pa.Array]:
    """The statistics columns, output by output, interleaved like the rows."""
    values: list[list[np.ndarray]] = [[] for _ in STAT_NAMES]
    valid: list[list[np.ndarray]] = [[] for _ in STAT_NAMES]
    for block in group[0].batch.outputs:
        if summable(block.dtype, block.nbytes):
            per_batch = [block_statistic_arrays(h.batch.output_array(block)) for h in group]
            *computed, some = (np.concatenate(column) for column in zip(*per_batch))
            known = [np.ones(records, bool)] * 2 + [some] * 3
        else:
            computed = [np.zeros(records)] * len(STAT_NAMES)
            known = [np.zeros(records, bool)] * len(STAT_NAMES)
        for k in range(len(STAT_NAMES)):
            values[k].append(computed[k])
            valid[k].append(known[k])
    return {
        name: pa.array(_in_row_order(values[k]), mask=~_in_row_order(valid[k]))
        for k, name in enumerate(STAT_NAMES)
    }


def _in_row_order(per_output: list[np.ndarray]) -> np.ndarray:
    """``_interleave`` for numpy columns: record by record, output by output."""
    return per_output[0] if len(per_output) == 1 else np.stack(per_output, axis=1).ravel()


def _values(group: list[HeldBatch], records: int, max_value_bytes: int) -> pa.Array:
    """The ``values`` column: each output's bytes where they are within the cap, else null.
    The stored bytes are copied once, straight into the column's buffer."""
    blocks = group[0].batch.outputs
    stored = [b for b in blocks if b.nbytes <= max_value_bytes]
    if not stored:
        return pa.nulls(records * len(blocks), pa.binary())
    width = sum(b.nbytes for b in stored)
    data = np.empty((records, width), np.uint8)
    row = 0
    for held in group:
        column = 0
        for block in stored:
            data[row : row + len(held.batch), column : column + block.nbytes] = (
                held.batch.output_bytes(block)
            )
            column += block.nbytes
        row += len(held.batch)
    kept = np.array([b.nbytes <= max_value_bytes for b in blocks])
    lengths = np.tile(np.where(kept, [b.nbytes for b in blocks], 0), records)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    validity = (
        None if kept.all() else pa.py_buffer(np.packbits(np.tile(kept, records), bitorder="little"))
    )
    return pa.Array.from_buffers(
        pa.binary(), len(lengths), [validity, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
