"""The shared-memory ring and the record encoding, in process (deaths are in test_coordinator)."""

from __future__ import annotations

import contextlib
import os
import random
import signal

import numpy as np
import pytest

from stress.contract import ring
from stress.contract.protocol import (
    KIND_ITERATION,
    STATUS_ERROR,
    STATUS_OK,
    Done,
    Failure,
    Hello,
    IterationWriter,
    Observation,
    ProtocolError,
    decode_iteration,
    decode_message,
    encode_message,
)


def pair(capacity: int = 4096):
    fd = ring.create(capacity)
    writer, reader = ring.RingWriter(fd), ring.RingReader(fd)
    os.close(fd)
    return writer, reader


def test_records_survive_many_wraparounds_in_order():
    writer, reader = pair(4096)
    rng = random.Random(0)
    sent, received = [], []
    for i in range(3000):
        payload = bytes([i % 251]) * rng.randint(0, 900)
        if writer.capacity - (writer.write_pos - reader.read_pos) < 2 * 1024:
            received += [p for _, p in reader.drain()]  # one thread: never let the writer wait
        offset = writer.begin(len(payload), 9)
        writer.mm[offset : offset + len(payload)] = payload
        writer.commit()
        sent.append(payload)
        if rng.random() < 0.1:
            received += [p for kind, p in reader.drain() if kind == 9]
    received += [p for _, p in reader.drain()]
    assert received == sent


def test_unpublished_record_is_invisible():
    writer, reader = pair()
    offset = writer.begin(5, 1)
    writer.mm[offset : offset + 5] = b"half!"
    assert reader.drain() == []  # the worker died before commit: nothing half-written leaks
    writer.commit()
    assert reader.drain() == [(1, b"half!")]


def _send(writer, payload: bytes, kind: int = 9) -> None:
    offset = writer.begin(len(payload), kind)
    writer.mm[offset : offset + len(payload)] = payload
    writer.commit()


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""

    def expired(*_):
        raise AssertionError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_record_larger_than_the_drain_window_is_taken_whole():
    """A window that ends inside a published record used to make no progress at all: the
    coordinator spun on it forever (a model with a 16 MiB output)."""
    writer, reader = pair(1 << 16)
    small, big = b"s" * 40, b"B" * 20_000
    for payload in (small, big, small, big):
        _send(writer, payload)
    received = []
    with deadline(5):
        for _ in range(10):
            received += [p for _, p in reader.drain(max_bytes=1000)]
    assert received == [small, big, small, big]
    assert reader.read_pos == writer.write_pos


def test_a_record_published_past_the_write_position_is_corruption():
    writer, reader = pair(4096)
    _send(writer, b"x" * 100)
    writer.mm[64 : 64 + 4] = (4000).to_bytes(4, "little")  # claims to run past what is published
    with deadline(5), pytest.raises(ring.CorruptRing):
        reader.drain()
        reader.drain()


def test_record_larger_than_half_the_ring_is_refused():
    writer, _ = pair(4096)
    with pytest.raises(ring.RecordTooLarge):
        writer.begin(3000, 1)


def test_iteration_round_trip_copies_outputs():
    writer, reader = pair(1 << 16)
    outputs = [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([7, 8], dtype=np.int32)]
    iterations = IterationWriter(writer)
    iterations.write((5, 111, 222, 333, 0, 1, STATUS_OK, 0), outputs)
    outputs[0][:] = -1  # a later run overwriting MNN's memory must not change the record
    iterations.write((6, 1, 2, 3, -1, 0, STATUS_ERROR, 0), [], "SystemError: boom")
    iterations.write((7, 1, 2, 3, 0, 0, STATUS_OK, 0), [np.arange(4.0).reshape(2, 2).T])
    encode_message(writer, Done(completed=2, stopped=False))
    (k1, first), (k2, second), (_, changed), (k3, third) = reader.drain()
    assert k1 == k2 == KIND_ITERATION
    with pytest.raises(ProtocolError, match="thread 1 of 1"):  # no such thread in the worker
        decode_iteration(first, 2, threads=1)
    record = decode_iteration(first, 2, threads=2)
    assert (
        record.iteration,
        record.ts_ns,
        record.latency_ns,
        record.rss_bytes,
        record.rc,
        record.thread,
        record.status,
    ) == (5, 111, 222, 333, 0, 1, STATUS_OK)
    index, dtype, shape, data = record.outputs[0]
    assert (index, dtype, shape) == (0, "float32", (3, 4))
    assert np.array_equal(np.frombuffer(data, np.float32), np.arange(12, dtype=np.float32))
    assert record.outputs[1][1:3] == ("int32", (2,))
    failed = decode_iteration(second, 2)
    assert failed.outputs == [] and failed.error == "SystemError: boom"
    _, dtype, shape, data = decode_iteration(changed, 2).outputs[0]  # layout relearned
    assert (dtype, shape) == ("float64", (2, 2))
    assert np.frombuffer(data).tolist() == [0.0, 2.0, 1.0, 3.0]  # a transposed view, in C order
    assert decode_message(third) == Done(completed=2, stopped=False)


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"type": "hello"}',  # fields missing
        b'{"type": "goodbye", "completed": 1}',  # no such message
        b'{"type": "done", "completed": "2", "stopped": false}',  # a field of the wrong type
        b'{"type": "done", "completed": 2, "stopped": false, "extra": 1}',
        b"[1, 2]",
    ],
)
def test_malformed_messages_are_protocol_errors(payload):
    with pytest.raises(ProtocolError):
        decode_message(payload)


def test_messages_round_trip_typed():
    writer, reader = pair()
    sent = [
        Hello(pid=5, mnn_version="3.6.1", numpy_version="2", python="3.11", executable="py"),
        Failure(origin="mnn", exception="SystemError", message="m", traceback="t"),
        Failure("harness", "KeyError", "k", "t", ring_bytes_needed=99),
        Done(completed=3, stopped=True),
    ]
    for message in sent:
        encode_message(writer, message)
    assert [decode_message(p) for _, p in reader.drain()] == sent


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:20],  # truncated head
        lambda b: b[:60],  # truncated output header
        lambda b: b[:48] + bytes([0, 0, 99]) + b[51:],  # unknown dtype code
        lambda b: b[:39] + bytes([3]) + b[40:],  # unknown observation
        lambda b: b[:48] + bytes([5, 0]) + b[50:],  # output index past the model's outputs
    ],
)
def test_mangled_iteration_records_are_protocol_errors(mangle):
    writer, reader = pair(1 << 16)
    IterationWriter(writer).write((1, 2, 3, 4, 0, 0, STATUS_OK, 0), [np.zeros(3, np.float32)])
    ((_, payload),) = reader.drain()
    assert decode_iteration(payload, 1).outputs  # the original decodes
    with pytest.raises(ProtocolError):
        decode_iteration(mangle(payload), 1)


def test_a_later_observation_round_trips():
    writer, reader = pair(1 << 16)
    head = (4, 2, 0, 0, 0, 1, STATUS_OK, Observation.AFTER_RELEASE)
    IterationWriter(writer).write(head, [np.zeros(3, np.float32)])
    ((_, payload),) = reader.drain()
    record = decode_iteration(payload, 1, threads=2)
    assert (record.iteration, record.thread, record.observation) == (4, 1, 2)


def test_a_record_longer_than_its_32_bit_length_is_refused_by_any_ring():
    """A ring larger than 8 GiB (sparse: nothing is touched) still refuses a record whose
    length does not fit its header's 32 bits, rather than packing a wrong length."""
    writer, _ = pair(2 * ring.MAX_RECORD_BYTES + 4096)
    with pytest.raises(ring.RecordTooLarge):
        writer.begin(ring.MAX_RECORD_BYTES, 1)
