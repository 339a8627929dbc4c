"""The coordinator <-> worker contract, defined once: the job and the records in the ring.

The coordinator sends a ``Job`` as JSON on the worker's stdin. The worker answers only through
its ring (never stdout: ``import MNN`` writes there): JSON messages (hello, error, done) and a
compact binary record per iteration. Stdlib only: workers import it.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import asdict, dataclass, field, fields
from enum import IntEnum
from typing import Any

from stress.contract import dtypes
from stress.contract.ring import MAX_RECORD_BYTES, RecordTooLarge, record_size

KIND_ITERATION = 1
KIND_MESSAGE = 2
# A worker's exit code when it could not even read its job or map its ring (our fault).
EXIT_HARNESS_SETUP = 70


class Status(IntEnum):
    """What one iteration produced; the ``status`` column holds the lower-case name."""

    OK = 0  # rc == 0, outputs recorded
    INVALID = 1  # MNN returned a non-zero code: whatever the outputs hold is not a result
    ERROR = 2  # an MNN call raised

    @property
    def label(self) -> str:
        return self.name.lower()


class Observation(IntEnum):
    """When an iteration's outputs were read; the ``observation`` column holds the lower-case
    name. Each iteration has one ``fetch`` row set; ``output_lifetime`` adds a second reading
    of views MNN returned, at the end of the worker's loop."""

    FETCH = 0  # read (copied into the ring) the moment the iteration produced them
    RETAINED = 1  # the same views read again at the end, their MNN objects still alive
    AFTER_RELEASE = 2  # the same views read again after their MNN objects were released

    @property
    def label(self) -> str:
        return self.name.lower()


OBSERVATION_NAMES = tuple(o.label for o in Observation)

# Plain ints for the worker's hot loop (an enum attribute lookup costs more than an int).
STATUS_OK, STATUS_INVALID, STATUS_ERROR = int(Status.OK), int(Status.INVALID), int(Status.ERROR)
STATUS_NAMES = tuple(s.label for s in Status)
# Keyed by numpy's one-letter dtype code: ``dtype.name`` costs ~2 us per call in numpy 2.
DTYPE_CODES = {char: d.code for char, d in dtypes.BY_CHAR.items()}
_DIMS = [struct.Struct(f"<{ndim}q") for ndim in range(33)]

# iteration, ts_ns, latency_ns, rss_bytes, rc, thread, status, observation, number of outputs
ITERATION_HEAD = struct.Struct("<qqqqiHBBH6x")  # 48 bytes: output data stays 8-aligned
# output index, dtype code, ndim, nbytes; then ndim int64 dims, then the bytes, 8-aligned
OUTPUT_HEAD = struct.Struct("<HBBI")
ERROR_LENGTH = struct.Struct("<I")
SPINS_BEFORE_BLOCKING = 200  # GIL yields before a writer blocks on a taken ring lock


@dataclass
class InputPlan:
    """How the worker makes one input array: generated from the seed, or read from ``file``
    (an absolute .npy/.npz path; distribution and scale are then unused)."""

    name: str
    shape: list[int]
    dtype: str
    distribution: str = "normal"
    scale: float = 1.0
    file: str | None = None


@dataclass
class Job:
    """Everything a worker needs to run a slice of one variant. Factor settings ride in
    ``params`` (factor name -> value), so new factors need no protocol change."""

    run_id: str
    scenario: str
    variant_id: str
    worker_id: int
    model_path: str
    inputs: list[InputPlan]
    output_names: list[str]
    params: dict[str, Any]
    seed: int = 0
    ring_fd: int = -1
    start_iterations: list[int] = field(default_factory=lambda: [0])  # one per thread
    stop_iteration: int | None = None
    iterations_per_worker: int | None = None  # per thread; then the worker ends (recycling)
    duration_s: float | None = None  # measured from the start of the iteration loop
    rss_interval_s: float = 0.2
    fault: str | None = None  # test-only; see stress.worker.faults
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        data["inputs"] = [InputPlan(**plan) for plan in data["inputs"]]
        return cls(**data)


@dataclass
class IterationRecord:
    """One decoded iteration: outputs are (index, dtype, shape, data), data being bytes or a
    memoryview of bytes the coordinator owns (copied out of the ring), never the ring itself."""

    iteration: int
    ts_ns: int
    latency_ns: int
    rss_bytes: int
    rc: int
    thread: int
    status: int
    outputs: list[tuple[int, str, tuple[int, ...], bytes]]
    error: str | None = None
    observation: int = Observation.FETCH


class ProtocolError(ValueError):
    """A record or message that no worker of ours could have written."""


@dataclass(frozen=True)
class Hello:
    """First message: the worker has loaded the model and starts its loop."""

    pid: int
    mnn_version: str
    numpy_version: str
    python: str
    executable: str


@dataclass(frozen=True)
class Done:
    """Last message of a worker that ended on its own: iterations run, and whether a SIGTERM
    stopped it early. Only ``output_lifetime``'s last look may follow it: rows of earlier
    iterations (``observation`` retained / after_release)."""

    completed: int
    stopped: bool


@dataclass(frozen=True)
class Failure:
    """The worker's last words before exiting on an exception. ``origin`` says whose it was:
    ``mnn`` (an MNN call raised: a finding), ``memory`` (an allocation failed: a finding) or
    ``harness`` (our own bug: never a finding).
    ``ring_bytes_needed`` is set when a record did not fit the ring."""

    origin: str
    exception: str
    message: str
    traceback: str
    ring_bytes_needed: int | None = None


Message = Hello | Done | Failure
MESSAGE_TYPES: dict[str, type] = {"hello": Hello, "done": Done, "failure": Failure}
_TYPE_OF = {cls: name for name, cls in MESSAGE_TYPES.items()}


def encode_message(ring: Any, message: Message) -> None:
    data = json.dumps({"type": _TYPE_OF[type(message)], **asdict(message)}).encode()
    offset = ring.begin(len(data), KIND_MESSAGE)
    ring.mm[offset : offset + len(data)] = data
    ring.commit()


def decode_message(payload: bytes) -> Message:
    """The typed message; ProtocolError for anything else (unknown type, missing or extra
    fields, fields of the wrong type)."""
    try:
        data = json.loads(bytes(payload))
        cls = MESSAGE_TYPES[data.pop("type")]
        message = cls(**data)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProtocolError(f"unreadable message: {type(exc).__name__}: {exc}") from exc
    for item in fields(message):
        if not _has_type(getattr(message, item.name), item.type):
            raise ProtocolError(f"message field {item.name} is not {item.type}")
    return message


def _has_type(value: Any, annotation: str) -> bool:
    kinds = {"int": int, "str": str, "bool": bool, "None": type(None)}
    allowed = tuple(kinds[part.strip()] for part in str(annotation).split("|"))
    return isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))


def iteration_record_size(outputs: list[tuple[int, int]]) -> int:
    """The ring bytes of an iteration record with outputs of these (ndim, nbytes): its head,
    each output's header and 8-aligned bytes (no error text)."""
    payload = ITERATION_HEAD.size + sum(
        OUTPUT_HEAD.size + 8 * ndim + ((nbytes + 7) & ~7) for ndim, nbytes in outputs
    )
    return record_size(payload)


class IterationWriter:
    """Writes iterations straight into a worker's ring.

    ``outputs`` are numpy arrays; MNN's own views are fine, because this is the copy that
    takes them out of MNN's memory. The headers of the last output layout are kept: the usual
    iteration (same shapes and dtypes as before) is written optimistically, checking the layout
    as it goes, and written again after relearning when it changed (nothing is published
    before ``commit``, so the abandoned attempt is simply overwritten).

    Several threads of one worker share its ring through one writer each and a ``lock`` held
    from ``begin`` to ``commit`` (only workers take it: the coordinator reads published
    positions and never waits on it). A thread killed while holding it loses its own record.
    """

    def __init__(self, ring: Any, lock: Any = None) -> None:
        self.ring = ring
        self._layout: list[tuple[Any, Any, bytes, int]] = []  # shape, dtype, header, padded size
        self._size = ITERATION_HEAD.size
        self.lock = lock
        if lock is not None:
            self.write = self._write_locked  # type: ignore[method-assign]

    def _write_locked(self, head: tuple, outputs: list[Any], error: str | None = None) -> None:
        """Under the worker's ring lock. A thread that finds it taken yields the GIL and tries
        again (the holder is usually just waiting for the GIL to finish its copy) before it
        blocks: blocking at once made every contended write a futex sleep and wake-up, which
        cost 4 Module-API threads 45 % of their throughput (bench/overhead.py)."""
        lock = self.lock
        for _ in range(SPINS_BEFORE_BLOCKING):
            if lock.acquire(False):
                break
            time.sleep(0)
        else:
            lock.acquire()
        try:
            IterationWriter.write(self, head, outputs, error)
        finally:
            lock.release()

    def write(self, head: tuple, outputs: list[Any], error: str | None = None) -> None:
        if (
            error is None
            and len(outputs) == len(self._layout)
            and self._write(head, outputs, self._size)
        ):
            self.ring.commit()
            return
        self._learn(outputs)
        message = error.encode()[:4000] if error else b""
        size = self._size + (ERROR_LENGTH.size + len(message) if error else 0)
        end = self._write(head, outputs, size)
        if error:
            mm = self.ring.mm
            ERROR_LENGTH.pack_into(mm, end, len(message))
            mm[end + ERROR_LENGTH.size : end + ERROR_LENGTH.size + len(message)] = message
        self.ring.commit()

    def _write(self, head: tuple, outputs: list[Any], size: int) -> int:
        """Write the record; returns where it ends, or 0 when the layout did not match."""
        mm = self.ring.mm
        offset = self.ring.begin(size, KIND_ITERATION)
        ITERATION_HEAD.pack_into(mm, offset, *head, len(outputs))
        offset += ITERATION_HEAD.size
        for (shape, dtype, header, padded), out in zip(self._layout, outputs):
            if out.shape != shape or out.dtype is not dtype:
                return 0
            mm[offset : offset + len(header)] = header
            offset += len(header)
            try:
                mm[offset : offset + out.nbytes] = out
            except (BufferError, TypeError, ValueError):  # not C-contiguous: copy it first
                mm[offset : offset + out.nbytes] = out.copy(order="C")
            offset += padded
        return offset

    def _learn(self, outputs: list[Any]) -> None:
        """The headers of this output layout. Outputs larger than a record can say (its
        length is 32 bits) raise RecordTooLarge before anything is written."""
        size = iteration_record_size([(out.ndim, out.nbytes) for out in outputs])
        if size > MAX_RECORD_BYTES:
            raise RecordTooLarge(size, self.ring.capacity)
        self._layout = [
            (
                out.shape,
                out.dtype,
                OUTPUT_HEAD.pack(index, DTYPE_CODES.get(out.dtype.char, 0), out.ndim, out.nbytes)
                + _DIMS[out.ndim].pack(*out.shape),
                (out.nbytes + 7) & ~7,
            )
            for index, out in enumerate(outputs)
        ]
        self._size = ITERATION_HEAD.size + sum(len(h) + p for _, _, h, p in self._layout)


def decode_iteration(payload: bytes, output_count: int, threads: int = 1) -> IterationRecord:
    """Decode and check one iteration; ProtocolError when it cannot have come from a worker
    with ``threads`` threads."""
    try:
        record = _decode_iteration(payload, output_count)
        if record.thread >= threads:
            raise ProtocolError(f"iteration record from thread {record.thread} of {threads}")
        return record
    except ProtocolError:
        raise
    except (struct.error, IndexError, ValueError) as exc:
        raise ProtocolError(f"unreadable iteration record: {exc}") from exc


def _decode_iteration(payload: bytes, output_count: int) -> IterationRecord:
    *head, observation, count = ITERATION_HEAD.unpack_from(payload, 0)
    record = IterationRecord(*head, outputs=[], observation=observation)
    if (
        record.status >= len(STATUS_NAMES)
        or observation >= len(OBSERVATION_NAMES)
        or count > output_count
    ):
        raise ProtocolError(
            f"iteration record with status {record.status}, observation {observation}, "
            f"{count} outputs"
        )
    offset = ITERATION_HEAD.size
    for _ in range(count):
        index, code, ndim, nbytes = OUTPUT_HEAD.unpack_from(payload, offset)
        offset += OUTPUT_HEAD.size
        shape = _DIMS[ndim].unpack_from(payload, offset)
        offset += 8 * ndim
        elements = 1
        for dim in shape:
            elements *= dim
        if (
            index >= output_count
            or code not in dtypes.BY_CODE
            or offset + nbytes > len(payload)
            or (code and nbytes != elements * dtypes.BY_CODE[code].itemsize)
        ):
            raise ProtocolError(
                f"output record {index} (dtype {code}, shape {shape}, {nbytes} bytes) is invalid"
            )
        record.outputs.append(
            (index, dtypes.BY_CODE[code].name, shape, payload[offset : offset + nbytes])
        )
        offset += (nbytes + 7) & ~7
    if record.status == STATUS_ERROR and offset + ERROR_LENGTH.size <= len(payload):
        (length,) = ERROR_LENGTH.unpack_from(payload, offset)
        start = offset + ERROR_LENGTH.size
        record.error = bytes(payload[start : start + length]).decode(errors="replace")
    return record
