"""A single-producer, single-consumer record ring in shared memory (a memfd).

The worker writes each record into the ring and then publishes the new write position; the
coordinator copies records out and publishes its read position. A record whose position is
published survives the worker's death, because the memory belongs to the coordinator too:
this is how a worker killed at any instant loses at most the iteration in flight, with no
system call per iteration. Stdlib only (workers import it). Relies on x86-64's store order.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass

_HEADER = struct.Struct("<8sQQQ")  # magic, capacity, write position, read position
_HEADER_SIZE = 64
_WRITE_POS = 16
_READ_POS = 24
_POS = struct.Struct("<Q")
_RECORD = struct.Struct("<IIB7x")  # total length (16-aligned), payload length, kind
RECORD_HEADER = _RECORD.size
MAX_RECORD_BYTES = 0xFFFFFFF0  # a record's length is 32 bits (16-aligned, below the wrap marker)
_COMPARED = 9  # header bytes that tell records apart: size, payload length, kind
_WRAP = 0xFFFFFFFF
MAGIC = b"MNNSRNG1"
COORDINATOR_PID_VAR = "MNN_STRESS_COORDINATOR_PID"
CORES_VAR = "MNN_STRESS_CORES"  # set: the worker raises its core size limit (native stacks)
EXIT_ORPHANED = 75  # a worker's exit code when its coordinator is gone


def coordinator_pid() -> int:
    """The pid of the coordinator that started this worker (our parent until it dies)."""
    return int(os.environ.get(COORDINATOR_PID_VAR) or os.getppid())


def record_size(payload_size: int) -> int:
    """The bytes a record of ``payload_size`` takes in a ring: its header and payload, 16-byte
    aligned (so a wrap marker always fits)."""
    return (_RECORD.size + payload_size + 15) & ~15


class RecordTooLarge(Exception):
    """A record that cannot fit in half the ring; ``needed`` is its size in bytes."""

    def __init__(self, needed: int, capacity: int) -> None:
        super().__init__(f"a record of {needed} bytes does not fit a ring of {capacity} bytes")
        self.needed = needed


class CorruptRing(Exception):
    """The ring holds something no writer of ours could have written."""


def create(capacity: int) -> int:
    """A new ring as a memfd; returns its file descriptor (inheritable by a worker)."""
    capacity = (capacity + 15) & ~15
    fd = os.memfd_create("mnn-stress-ring", 0)
    os.ftruncate(fd, _HEADER_SIZE + capacity)
    with mmap.mmap(fd, _HEADER_SIZE + capacity) as mm:
        _HEADER.pack_into(mm, 0, MAGIC, capacity, 0, 0)
    return fd


class RingWriter:
    """Worker side: ``begin`` reserves room for a payload; ``commit`` publishes it."""

    def __init__(self, fd: int) -> None:
        self.mm = mmap.mmap(fd, 0)
        magic, self.capacity, self.write_pos, read_pos = _HEADER.unpack_from(self.mm, 0)
        if magic != MAGIC:
            raise ValueError("not an mnn-stress ring")
        self._pending = self.write_pos
        self._free_until = read_pos + self.capacity  # read_pos only grows: a safe lower bound
        self._parent = coordinator_pid()

    def begin(self, payload_size: int, kind: int) -> int:
        size = record_size(payload_size)
        if size > self.capacity >> 1 or size > MAX_RECORD_BYTES:
            raise RecordTooLarge(size, self.capacity)
        pos = self.write_pos
        offset = pos % self.capacity
        tail = self.capacity - offset
        if size > tail:  # not enough room before the end: mark the wrap, start again at 0
            self._wait_until(pos + tail + size)
            struct.pack_into("<I", self.mm, _HEADER_SIZE + offset, _WRAP)
            pos += tail
            offset = 0
        elif pos + size > self._free_until:
            self._wait_until(pos + size)
        _RECORD.pack_into(self.mm, _HEADER_SIZE + offset, size, payload_size, kind)
        self._pending = pos + size
        return _HEADER_SIZE + offset + _RECORD.size

    def commit(self) -> None:
        self.write_pos = self._pending
        _POS.pack_into(self.mm, _WRITE_POS, self._pending)

    def _wait_until(self, end: int) -> None:
        """Block until the reader has freed the ring up to ``end`` (absolute position)."""
        while True:
            self._free_until = _POS.unpack_from(self.mm, _READ_POS)[0] + self.capacity
            if end <= self._free_until:
                return
            if os.getppid() != self._parent:  # the coordinator is gone: nobody will drain
                os._exit(EXIT_ORPHANED)
            time.sleep(0.0005)


@dataclass(frozen=True)
class Run:
    """``count`` consecutive records whose ring headers are identical (one kind, one payload
    ``length``), copied out together: record i's payload is ``data[i * stride + RECORD_HEADER
    :][:length]``. A worker's iterations usually come as long runs, which the coordinator
    decodes as columns instead of record by record."""

    kind: int
    length: int
    stride: int
    count: int
    data: bytes

    def payloads(self) -> list[memoryview]:
        """Each record's payload, as a view of ``data`` (no copy)."""
        view = memoryview(self.data)
        ends = range(RECORD_HEADER, RECORD_HEADER + self.count * self.stride, self.stride)
        return [view[start : start + self.length] for start in ends]


class RingReader:
    """Coordinator side: copies out every published record since the last drain."""

    def __init__(self, fd: int) -> None:
        self.mm = mmap.mmap(fd, 0)
        _, self.capacity, _, self.read_pos = _HEADER.unpack_from(self.mm, 0)
        self.corruption: str | None = None
        self.last_drained = 0  # bytes the last drain took: how full the ring had become

    @property
    def write_pos(self) -> int:
        return _POS.unpack_from(self.mm, _WRITE_POS)[0]

    def drain(self, max_bytes: int = 1 << 26) -> list[tuple[int, bytes]]:
        """Records as (kind, payload), oldest first. At a corrupt record, the good ones before
        it are returned and the next call raises CorruptRing."""
        runs = self.drain_runs(max_bytes)
        return [(run.kind, bytes(payload)) for run in runs for payload in run.payloads()]

    def drain_runs(self, max_bytes: int = 1 << 26) -> list[Run]:
        """``drain``, with consecutive records of identical headers kept together as runs (a
        few strided comparisons find them; each run is one copy). ``max_bytes`` bounds what
        a drain copies, except that a record starting within it is taken whole, whatever its
        size: a drain always makes progress when anything is published."""
        if self.corruption:
            raise CorruptRing(self.corruption)
        published = self.write_pos
        end = min(published, self.read_pos + max_bytes)
        runs = []
        pos = self.read_pos
        while pos < end:
            offset = pos % self.capacity
            start = _HEADER_SIZE + offset
            size, length, kind = _RECORD.unpack_from(self.mm, start)
            if size == _WRAP:
                pos += self.capacity - offset
                continue
            if (
                size % 16
                or not _RECORD.size + length <= size <= self.capacity - offset
                or pos + size > published
            ):
                self.corruption = f"record of size {size} (payload {length}) at {pos}"
                break
            # Records of this size within the window; at least this one, which is published
            # whole: a record larger than what is left of the window is still taken.
            fits = max(1, min(end - pos, self.capacity - offset) // size)
            count = self._uniform(start, size, fits)
            runs.append(Run(kind, length, size, count, self.mm[start : start + count * size]))
            pos += count * size
        self.last_drained = pos - self.read_pos
        self.read_pos = pos
        _POS.pack_into(self.mm, _READ_POS, pos)
        return runs

    def _uniform(self, start: int, size: int, most: int) -> int:
        """How many records from ``start`` (at least 1, at most ``most``) share the first's
        header. Usually all of them (one check); else doubling while they do, then halving,
        so the cost follows the run's length."""
        if self._same_headers(start, size, most):
            return most
        known, trial = 1, 2
        while trial < most and self._same_headers(start, size, trial):
            known, trial = trial, 2 * trial
        limit = min(trial, most) - 1
        while known < limit:
            middle = (known + limit + 1) // 2
            if self._same_headers(start, size, middle):
                known = middle
            else:
                limit = middle - 1
        return known

    def _same_headers(self, start: int, size: int, count: int) -> bool:
        """Whether the ``count`` records of ``size`` bytes from ``start`` share one header."""
        if count <= 1:
            return True
        mm, stop = self.mm, start + count * size
        return all(
            mm[start + j : stop : size] == mm[start + j : start + j + 1] * count
            for j in range(_COMPARED)
        )

    def close(self) -> None:
        self.mm.close()
