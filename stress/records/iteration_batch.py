"""Runs of same-layout iteration records decoded as columns, without an object per record.

A worker's records usually share one layout: the same outputs with the same shapes and
dtypes, and no error text. The ring hands such records over as one copied run
(``ring.Run``), read here through a numpy structured dtype that mirrors ``ITERATION_HEAD``, so
decoding, checking and the coordinator's bookkeeping cost a few numpy calls per run instead of
Python per record. Everything else
(error records, a layout change, short runs, a bad record) is decoded one record at a time by
``decode_iteration``, which also says exactly what is wrong with a bad one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from stress.contract import dtypes
from stress.contract.protocol import (
    ITERATION_HEAD,
    OBSERVATION_NAMES,
    OUTPUT_HEAD,
    STATUS_ERROR,
    STATUS_NAMES,
    IterationRecord,
    Observation,
    decode_iteration,
)
from stress.contract.ring import RECORD_HEADER, Run
from stress.records.statistics import digest

# ITERATION_HEAD as numpy reads it (checked against the struct below).
HEAD_FIELDS = (
    ("iteration", "<i8", 0),
    ("ts_ns", "<i8", 8),
    ("latency_ns", "<i8", 16),
    ("rss_bytes", "<i8", 24),
    ("rc", "<i4", 32),
    ("thread", "<u2", 36),
    ("status", "u1", 38),
    ("observation", "u1", 39),
    ("count", "<u2", 40),
)
_COUNT_START = next(offset for name, _, offset in HEAD_FIELDS if name == "count")  # 2 bytes
MIN_RUN = 8  # a shorter run is decoded record by record: a batch costs a few numpy calls


@functools.lru_cache(maxsize=64)
def head_dtype(stride: int, base: int = 0) -> np.dtype:
    """The head's fields within records of ``stride`` bytes whose payload starts at ``base``."""
    names, formats, offsets = zip(*HEAD_FIELDS)
    offsets = tuple(base + offset for offset in offsets)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": stride})


def _check_head_dtype() -> None:
    sample = (1, 2, 3, 4, -5, 6, 1, 2, 3)
    decoded = np.frombuffer(ITERATION_HEAD.pack(*sample), head_dtype(ITERATION_HEAD.size))[0]
    if tuple(decoded.item()) != sample:
        raise ImportError("iteration_batch: HEAD_FIELDS do not match protocol.ITERATION_HEAD")


_check_head_dtype()


@dataclass(frozen=True)
class OutputBlock:
    """One output of every record in a batch: where its bytes start within each record."""

    index: int
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    offset: int


@dataclass(frozen=True)
class IterationBatch:
    """Records of one worker sharing one layout: ``data`` holds them as the ring did,
    ``stride`` bytes each, ring header included; ``head`` is a structured view of their heads
    (``HEAD_FIELDS``); each output's ``offset`` counts from the start of its record."""

    data: bytes
    stride: int
    head: np.ndarray
    outputs: tuple[OutputBlock, ...]

    def __len__(self) -> int:
        return len(self.head)

    def output_digests(self, block: OutputBlock) -> tuple[list[str], np.ndarray]:
        """xxh3-64 digests (hex) of each record's bytes of one output, as the distinct ones in
        order and, per record, which of them it has. A record whose bytes equal the record
        before's is not hashed again: a deterministic run hashes once per batch."""
        words = self._as_words(block)
        changed = np.ones(len(self), bool)
        changed[1:] = (words[1:] != words[:-1]).any(axis=1)
        view, size = memoryview(self.data), block.nbytes
        starts = (block.offset + np.flatnonzero(changed) * self.stride).tolist()
        return [digest(view[start : start + size]) for start in starts], np.cumsum(changed) - 1

    def _as_words(self, block: OutputBlock) -> np.ndarray:
        """The output's bytes as unsigned integers as wide as divide its size: bit equality."""
        width = next(w for w in (8, 4, 2, 1) if block.nbytes % w == 0)
        return self._view(block, np.dtype(f"<u{width}"))

    def output_array(self, block: OutputBlock) -> np.ndarray:
        """One output of every record as a (records, elements) view of its dtype (bytes for an
        unknown dtype)."""
        if dtypes.by_name(block.dtype) is dtypes.UNKNOWN:
            return self.output_bytes(block)
        return self._view(block, np.dtype(block.dtype))

    def output_bytes(self, block: OutputBlock) -> np.ndarray:
        """One output of every record as a (records, nbytes) view of its bytes."""
        return self._view(block, np.dtype(np.uint8))

    def _view(self, block: OutputBlock, kind: np.dtype) -> np.ndarray:
        """One output of every record as a (records, elements of ``kind``) view of ``data``."""
        return np.ndarray(
            (len(self), block.nbytes // kind.itemsize),
            kind,
            buffer=self.data,
            offset=block.offset,
            strides=(self.stride, kind.itemsize),
        )

    def fetched(self) -> np.ndarray:
        """Which records are an iteration's own reading (not a later look at old outputs)."""
        return self.head["observation"] == Observation.FETCH

    def last_iterations(self, fetched: np.ndarray) -> dict[int, int]:
        """Per thread, the last iteration among the ``fetched`` records (each thread's come
        in order)."""
        threads, iterations = self.head["thread"][fetched], self.head["iteration"][fetched]
        if not len(threads):
            return {}
        if threads[0] == threads[-1] and (threads == threads[0]).all():  # one thread: usual
            return {int(threads[0]): int(iterations[-1])}
        return {int(t): int(iterations[threads == t][-1]) for t in np.unique(threads)}


Decoded = IterationRecord | IterationBatch


def decode_run(run: Run, output_count: int, threads: int, into: list[Decoded]) -> None:
    """Append a run of iteration records to ``into``: as one batch where they share a layout,
    else one by one. A bad record raises ProtocolError with every record before it in
    ``into``."""
    batch = as_batch(run, output_count, threads) if run.count >= MIN_RUN else None
    if batch is not None:
        into.append(batch)
    else:
        into.extend(decode_iteration(p, output_count, threads) for p in run.payloads())


def as_batch(run: Run, output_count: int, threads: int) -> IterationBatch | None:
    """The run as one batch, or None unless every record is a valid, error-free record with
    the first one's outputs (the caller then decodes them one by one)."""
    first = decode_iteration(run.payloads()[0], output_count, threads)
    if not first.outputs:
        return None
    head = np.frombuffer(run.data, head_dtype(run.stride, RECORD_HEADER))
    outputs, layout = _layout(first)
    rows = np.frombuffer(run.data, np.uint8).reshape(run.count, run.stride)
    same_layout = (rows[:, layout] == rows[0, layout]).all()
    valid = (
        (head["status"] < len(STATUS_NAMES))
        & (head["status"] != STATUS_ERROR)
        & (head["observation"] < len(OBSERVATION_NAMES))
        & (head["thread"] < threads)
    ).all()
    return IterationBatch(run.data, run.stride, head, outputs) if same_layout and valid else None


def _layout(first: IterationRecord) -> tuple[tuple[OutputBlock, ...], np.ndarray]:
    """The first record's outputs (offsets within a ring record), and the byte positions that
    must be equal in every record of its batch (the output count and every output's header)."""
    count = RECORD_HEADER + _COUNT_START
    outputs, positions = [], [np.arange(count, count + 2)]
    offset = RECORD_HEADER + ITERATION_HEAD.size
    for index, dtype, shape, data in first.outputs:
        header = OUTPUT_HEAD.size + 8 * len(shape)
        positions.append(np.arange(offset, offset + header))
        outputs.append(OutputBlock(index, dtype, shape, len(data), offset + header))
        offset += header + ((len(data) + 7) & ~7)
    return tuple(outputs), np.concatenate(positions)
