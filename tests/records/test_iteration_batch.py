"""Records decoded as columns: runs out of the ring, batches out of runs, rows out of batches.

The columnar path must write exactly what the one-record-at-a-time path writes, whatever the
records hold; every test here compares the two or a reference computed independently.
"""

from __future__ import annotations

import itertools
import os
import random

import numpy as np
import pyarrow as pa
import pytest
import xxhash

from stress.contract import ring
from stress.contract.protocol import (
    KIND_ITERATION,
    KIND_MESSAGE,
    STATUS_ERROR,
    STATUS_INVALID,
    STATUS_OK,
    IterationWriter,
    Observation,
    ProtocolError,
    decode_iteration,
)
from stress.coordinator.plan import Budget, plan
from stress.coordinator.progress import count_batch, count_record
from stress.factors import defaults
from stress.records.iteration_batch import MIN_RUN, IterationBatch, as_batch, decode_run
from stress.records.parts import PartWriter
from stress.records.row_buffer import IterationBuffer
from stress.records.schema import RowContext
from stress.scenario import load_scenario


def pair(capacity: int = 1 << 20):
    fd = ring.create(capacity)
    writer, reader = ring.RingWriter(fd), ring.RingReader(fd)
    os.close(fd)
    return writer, reader


def write_raw(writer: ring.RingWriter, kind: int, payload: bytes) -> None:
    offset = writer.begin(len(payload), kind)
    writer.mm[offset : offset + len(payload)] = payload
    writer.commit()


def context(names=("y",), max_value_bytes: int = 1 << 20) -> RowContext:
    values = {"run_id": "r", "scenario": "s", "variant_id": "v", **defaults()}
    values |= {"worker_id": 0, "pid": 1, "host": "h", "mnn_version": "x"}
    return RowContext(values, tuple(names), max_value_bytes)


def head(i: int, thread: int = 0, status: int = STATUS_OK, observation: int = 0) -> tuple:
    return (i, 10**18 + i, 1000 + i, (1 << 20) + i, 0 if status == STATUS_OK else 3, thread,
            status, observation)  # fmt: skip


# --- runs ------------------------------------------------------------------------------------
def test_runs_hold_every_record_in_order_across_many_wraparounds():
    """Random sequences of record sizes and kinds, wrapping a small ring many times: the
    payloads out of the runs are what was written, byte for byte."""
    rng = random.Random(1)
    writer, reader = pair(1 << 14)
    sent, runs = [], []
    for i in range(4000):
        kind, length = rng.choice([(1, 40), (1, 40), (1, 40), (1, 56), (2, 40), (1, 0)])
        if writer.capacity - (writer.write_pos - reader.read_pos) < 256:
            runs += reader.drain_runs()
        write_raw(writer, kind, bytes((i + k) % 256 for k in range(length)))
        sent.append((kind, bytes((i + k) % 256 for k in range(length))))
        if rng.random() < 0.02:
            runs += reader.drain_runs()
    runs += reader.drain_runs()
    assert [(run.kind, bytes(p)) for run in runs for p in run.payloads()] == sent
    assert all(len(run.data) == run.count * run.stride for run in runs)
    assert max(run.count for run in runs) > 10  # runs do form


def test_runs_are_the_maximal_groups_of_equal_headers():
    """Within one drain that does not wrap: one run per group of consecutive records of one
    kind and length, no more, no fewer."""
    rng = random.Random(2)
    writer, reader = pair(1 << 22)
    sent = [rng.choice([(1, 40), (1, 40), (1, 40), (1, 56), (2, 40)]) for _ in range(3000)]
    for kind, length in sent:
        write_raw(writer, kind, bytes(length))
    groups = [(key, len(list(items))) for key, items in itertools.groupby(sent)]
    assert [((run.kind, run.length), run.count) for run in reader.drain_runs()] == groups


def test_a_long_run_is_found_whole_and_a_change_at_any_place_splits_it():
    for change_at in (1, 2, 3, 63, 64, 65, 127, 999):
        writer, reader = pair()
        for i in range(1000):
            write_raw(writer, 1, bytes(48 if i == change_at else 40))
        counts = [run.count for run in reader.drain_runs()]
        assert counts == [change_at, 1, 999 - change_at][: 3 if change_at < 999 else 2]


def test_drain_still_gives_one_payload_per_record():
    writer, reader = pair()
    for i in range(20):
        write_raw(writer, KIND_MESSAGE if i == 7 else KIND_ITERATION, bytes([i]) * 9)
    assert reader.drain() == [
        (KIND_MESSAGE if i == 7 else KIND_ITERATION, bytes([i]) * 9) for i in range(20)
    ]


# --- batches ---------------------------------------------------------------------------------
def iteration_run(records: list[tuple[tuple, list[np.ndarray], str | None]]) -> ring.Run:
    """The records written by the workers' own writer, drained as one run (they must share a
    length)."""
    writer, reader = pair()
    write = IterationWriter(writer).write
    for record_head, outputs, error in records:
        write(record_head, outputs, error)
    (run,) = reader.drain_runs()
    assert run.count == len(records)
    return run


def one_by_one(run: ring.Run, outputs: int, threads: int = 1):
    return [decode_iteration(p, outputs, threads) for p in run.payloads()]


def test_a_uniform_run_is_one_batch_holding_what_each_record_holds():
    rng = np.random.default_rng(0)
    records = []
    for i in range(40):
        a = rng.standard_normal((2, 3)).astype(np.float32)
        b = rng.integers(0, 9, 5).astype(np.int32)
        records.append((head(i, thread=i % 2, observation=i % 3 == 0), [a, b], None))
    run = iteration_run(records)
    batch = as_batch(run, 2, threads=2)
    assert isinstance(batch, IterationBatch) and len(batch) == 40
    expected = one_by_one(run, 2, threads=2)
    for field in ("iteration", "ts_ns", "latency_ns", "rss_bytes", "rc", "thread", "status"):
        assert batch.head[field].tolist() == [getattr(r, field) for r in expected]
    assert batch.head["observation"].tolist() == [r.observation for r in expected]
    for k, block in enumerate(batch.outputs):
        assert (block.index, block.dtype, block.shape) == expected[0].outputs[k][:3]
        arrays = batch.output_array(block)
        for row, record in zip(arrays, expected):
            assert row.tobytes() == bytes(record.outputs[k][3])
    fetched = batch.fetched()
    assert fetched.tolist() == [r.observation == Observation.FETCH for r in expected]
    last = {}
    for r in expected:
        if r.observation == Observation.FETCH:
            last[r.thread] = r.iteration
    assert batch.last_iterations(fetched) == last


@pytest.mark.parametrize(
    "odd",
    [
        "error",  # an error record of the same length as the others
        "shape",  # same bytes, another shape: (3, 2) instead of (2, 3)
        "dtype",  # int32 instead of float32, same size
        "thread",  # a thread the worker does not have
        "status",  # a status no worker writes
        "observation",  # an observation no worker writes
    ],
)
def test_a_run_with_any_odd_record_is_not_a_batch_and_decodes_one_by_one(odd):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    records = [(head(i), [x], None) for i in range(MIN_RUN + 4)]
    if odd == "error":  # pad the ok records' outputs so an error record matches their length
        records = [(head(i), [np.arange(8, dtype=np.float32)], None) for i in range(12)]
        records[5] = (head(5, status=STATUS_ERROR), [np.arange(4, dtype=np.float32)], "x" * 12)
    elif odd == "shape":
        records[5] = (head(5), [x.reshape(3, 2)], None)
    elif odd == "dtype":
        records[5] = (head(5), [x.view(np.int32)], None)
    elif odd == "thread":
        records[5] = (head(5, thread=1), [x], None)
    elif odd == "status":
        records[5] = (head(5, status=9), [x], None)
    else:
        records[5] = (head(5, observation=7), [x], None)
    run = iteration_run(records)
    assert as_batch(run, 1, threads=1) is None
    decoded: list = []
    if odd in ("thread", "status", "observation"):  # not ours: the five before it are kept
        with pytest.raises(ProtocolError, match="thread 1 of 1|status 9|observation 7"):
            decode_run(run, 1, 1, decoded)
        assert [r.iteration for r in decoded] == [0, 1, 2, 3, 4]
        return
    decode_run(run, 1, 1, decoded)
    assert [r.iteration for r in decoded] == list(range(len(records)))
    if odd == "error":
        assert decoded[5].error == "x" * 12 and decoded[5].status == STATUS_ERROR
    else:
        expected = ("int32", (2, 3)) if odd == "dtype" else ("float32", (3, 2))
        assert decoded[5].outputs[0][1:3] == expected


def test_a_short_run_is_decoded_one_by_one():
    run = iteration_run([(head(i), [np.zeros(3, np.float32)], None) for i in range(MIN_RUN - 1)])
    decoded: list = []
    decode_run(run, 1, 1, decoded)
    assert len(decoded) == MIN_RUN - 1 and not any(isinstance(d, IterationBatch) for d in decoded)


# --- rows ------------------------------------------------------------------------------------
def rows_both_ways(
    tmp_path, records, names=("a", "b"), max_value_bytes: int = 1 << 20, threads: int = 1
):
    """The same records buffered as a batch and one by one, as the tables a flush writes."""
    run = iteration_run(records)
    batch = as_batch(run, len(names), threads)
    assert batch is not None
    tables = []
    for as_columns in (True, False):
        buffer = IterationBuffer(PartWriter(tmp_path / str(as_columns)))
        buffer.available_bytes = 123456
        row_context = context(names, max_value_bytes)
        if as_columns:
            buffer.add_batch(row_context, batch)
        else:
            for record in one_by_one(run, len(names), threads):
                buffer.add(row_context, record)
        tables.append(buffer.to_table())
    return tables


def assert_same_rows(batched: pa.Table, single: pa.Table) -> None:
    assert batched.schema == single.schema
    for name in single.column_names:
        assert batched[name].to_pylist() == single[name].to_pylist(), name


def test_batched_rows_equal_rows_added_one_by_one(tmp_path):
    """Two outputs (one over the value cap), NaN and inf, invalid return codes, threads and
    later looks: every column, every row, the same either way."""
    rng = np.random.default_rng(2)
    records = []
    for i in range(30):
        a = rng.standard_normal(5).astype(np.float32)  # 20 bytes: over the cap
        if i % 7 == 3:
            a[1] = np.nan
        if i % 11 == 5:
            a[:] = np.inf
        b = np.full((2, 2), i // 4, np.int32)  # 16 bytes, stored; repeats: equal bytes in a row
        status = STATUS_INVALID if i % 5 == 4 else STATUS_OK
        records.append((head(i, thread=i % 2, status=status, observation=i % 9 == 8), [a, b], None))
    batched, single = rows_both_ways(tmp_path, records, max_value_bytes=16, threads=2)
    assert_same_rows(batched, single)
    assert batched.num_rows == 60
    assert batched["values"].null_count == 30  # a over the cap, b stored
    assert batched["output_name"].to_pylist()[:4] == ["a", "b", "a", "b"]


def test_batched_digests_are_each_records_own_even_when_neighbours_repeat(tmp_path):
    x = np.arange(6, dtype=np.float32)
    outputs = [x, x, x + 1, x, x, x + 1, x + 1, x]  # repeats, changes, changes back
    records = [(head(i), [o], None) for i, o in enumerate(outputs * 2)]
    batched, single = rows_both_ways(tmp_path, records, names=("a",))
    expected = [xxhash.xxh3_64_hexdigest(o.tobytes()) for o in outputs * 2]
    assert batched["digest"].to_pylist() == expected
    assert_same_rows(batched, single)


def test_a_single_bit_change_is_a_new_digest(tmp_path):
    """Bit equality, not float equality: -0.0 against 0.0 and one NaN payload against another."""
    zero, negative_zero = np.zeros(4, np.float32), np.array([0, -0.0, 0, 0], np.float32)
    nan_a = np.array([np.nan] * 4, np.float32)
    nan_b = nan_a.view(np.uint32).copy()
    nan_b[0] += 1
    outputs = [zero, negative_zero, nan_a, nan_b.view(np.float32)] * 3
    records = [(head(i), [o], None) for i, o in enumerate(outputs)]
    batched, _ = rows_both_ways(tmp_path, records, names=("a",))
    assert len(set(batched["digest"].to_pylist())) == 4


def test_batches_of_one_worker_keep_its_order_beside_records_added_one_by_one(tmp_path):
    buffer = IterationBuffer(PartWriter(tmp_path / "iterations"))
    left, right = context(("y",)), context(("y",))
    x = np.ones(3, np.float32)
    for start in (0, 20, 40):
        run = iteration_run([(head(i), [x], None) for i in range(start, start + 10)])
        buffer.add_batch(left, as_batch(run, 1, 1))
        buffer.add_batch(right, as_batch(run, 1, 1))
        later = iteration_run([(head(i), [x], None) for i in range(start + 10, start + 20)])
        for record in one_by_one(later, 1):
            buffer.add(left, record)
    table = buffer.to_table()
    iterations = table["iteration"].to_pylist()
    assert iterations[:60] == list(range(60))  # the first worker's, in order
    assert iterations[60:] == [i for start in (0, 20, 40) for i in range(start, start + 10)]
    assert len(buffer) == table.num_rows == 90


# --- the coordinator's bookkeeping -----------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 3])
def test_counting_a_batch_equals_counting_its_records_one_by_one(scenario_file, threads):
    rng = random.Random(3)
    records = []
    iteration = [0, 0, 0]
    for _ in range(60):
        thread = rng.randrange(threads)
        status = rng.choice([STATUS_OK, STATUS_OK, STATUS_INVALID])
        observation = rng.random() < 0.2
        zeros = [np.zeros(2, np.float32)]
        records.append((head(iteration[thread], thread, status, observation), zeros, None))
        iteration[thread] += not observation
    run = iteration_run(records)
    batch = as_batch(run, 1, threads=threads)
    assert batch is not None
    path = scenario_file(f"name: count\nmodel: tiny\nmatrix:\n  threads: [{threads}]\n")
    (a,) = plan([load_scenario(path)], Budget(), 1)
    (b,) = plan([load_scenario(path)], Budget(), 1)
    seen_a: dict[int, float] = {}
    seen_b: dict[int, float] = {}
    rss_batch = count_batch(a, seen_a, batch, now=5.0)
    rss_records = max(count_record(b, seen_b, r, 5.0) for r in one_by_one(run, 1, threads))
    assert rss_batch == rss_records
    assert (a.completed, a.next_iterations, dict(a.outcomes)) == (
        b.completed,
        b.next_iterations,
        dict(b.outcomes),
    )
    assert seen_a == seen_b == {t: 5.0 for t in range(threads)}
    assert a.completed == sum(1 for r in records if not r[0][7])


def test_batches_held_together_keep_each_records_digest_and_shape(tmp_path):
    """Consecutive batches of one worker are turned into columns together: each keeps its
    records' own digests, and a batch of another shape (same size) keeps its shape."""
    buffer = IterationBuffer(PartWriter(tmp_path / "iterations"))
    row_context = context(("y",))
    expected = []
    for start, shape in ((0, (2, 3)), (10, (2, 3)), (20, (3, 2)), (30, (2, 3))):
        outputs = [np.full(shape, start + i % 3, np.float32) for i in range(10)]
        run = iteration_run([(head(start + i), [o], None) for i, o in enumerate(outputs)])
        buffer.add_batch(row_context, as_batch(run, 1, 1))
        expected += [(xxhash.xxh3_64_hexdigest(o.tobytes()), list(shape)) for o in outputs]
    table = buffer.to_table()
    assert list(zip(table["digest"].to_pylist(), table["shape"].to_pylist())) == expected


def test_a_value_not_known_is_a_null_in_its_rows(tmp_path):
    """A context value of None, and the machine's available memory before it was first
    sampled: nulls, never a made-up value."""
    buffer = IterationBuffer(PartWriter(tmp_path / "iterations"))
    known, unknown = context(("y",)), context(("y",))
    unknown.values["mnn_version"] = None
    run = iteration_run([(head(i), [np.ones(2, np.float32)], None) for i in range(10)])
    buffer.add_batch(known, as_batch(run, 1, 1))
    buffer.available_bytes = 0
    buffer.add_batch(unknown, as_batch(run, 1, 1))
    table = buffer.to_table()
    assert table["mnn_version"].to_pylist() == ["x"] * 10 + [None] * 10
    assert table["available_bytes"].to_pylist() == [None] * 10 + [0] * 10
