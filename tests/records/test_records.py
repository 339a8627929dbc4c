"""The Parquet schema and statistics, read back by pyarrow, pandas and DuckDB."""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import resource
import weakref

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from stress.contract.protocol import STATUS_ERROR, STATUS_OK, IterationRecord
from stress.errors import StorageError
from stress.factors import defaults
from stress.records.events import EVENT_SCHEMA, Event, EventKind, EventWriter
from stress.records.parts import PartWriter
from stress.records.row_buffer import IterationBuffer
from stress.records.schema import ITERATION_SCHEMA, RowContext
from stress.records.statistics import block_statistics, output_statistics


def test_statistics_count_non_finite_and_ignore_it_in_min_max_mean():
    values = [
        np.array([1.0, np.nan, 3.0, np.inf], np.float32).tobytes(),
        np.array([np.nan, np.nan, -np.inf, np.nan], np.float32).tobytes(),
        None,
        np.array([-2, 4], np.int32).tobytes(),
    ]
    stats = output_statistics(values, ["float32", "float32", None, "int32"])
    assert stats["nan_count"] == [1, 3, None, 0]
    assert stats["inf_count"] == [1, 1, None, 0]
    assert stats["min"] == [1.0, None, None, -2.0]
    assert stats["max"] == [3.0, None, None, 4.0]
    assert stats["mean"] == [2.0, None, None, 1.0]


def test_statistics_of_finite_rows_beside_non_finite_ones():
    """One block, some rows finite and some not: each row gets its own counts (the finite
    rows' one-pass shortcut must not be taken for the whole block)."""
    block = np.array([[1, 2, 3, 4], [1, np.nan, 3, 4], [np.inf, 0, 0, 0]], np.float32)
    nan, inf, low, high, mean = block_statistics(block)
    assert (nan, inf) == ([0, 1, 0], [0, 0, 1])
    assert (low, high, mean) == ([1.0, 1.0, 0.0], [4.0, 4.0, 0.0], [2.5, 8 / 3, 0.0])


def test_rows_written_are_readable_by_pyarrow_pandas_and_duckdb(tmp_path):
    buffer = IterationBuffer(PartWriter(tmp_path / "iterations"))
    context = RowContext(
        values={
            "run_id": "r",
            "scenario": "s",
            "variant_id": "v1",
            **defaults(),
            "num_thread": 2,
            "worker_id": 3,
            "pid": 42,
            "host": "h",
            "mnn_version": "3.6.1",
        },
        output_names=("a", "b"),
        max_value_bytes=8,
    )
    small = np.array([1.5, 2.5], np.float32).tobytes()
    large = np.arange(16, dtype=np.float32).tobytes()
    buffer.add(
        context,
        IterationRecord(
            0,
            10**18,
            500,
            1 << 20,
            0,
            0,
            STATUS_OK,
            [(0, "float32", (2,), small), (1, "float32", (4, 4), large)],
        ),
    )
    buffer.add(
        context,
        IterationRecord(1, 10**18 + 1, 600, 1 << 20, -1, 0, STATUS_ERROR, [], "SystemError: x"),
    )
    buffer.flush()
    table = ds.dataset(str(tmp_path / "iterations")).to_table()
    assert table.schema.equals(ITERATION_SCHEMA)
    rows = table.to_pandas()
    assert list(rows.output_name[:2]) == ["a", "b"]
    assert rows.num_thread.tolist() == [2, 2, 2]
    assert rows["values"][0] == small and rows["values"][1] is None  # over the 8-byte cap
    assert rows.digest[0] != rows.digest[1] and len(rows.digest[0]) == 16
    # the large output's statistics were computed on arrival, its bytes dropped
    assert (rows["min"][1], rows["max"][1], rows["mean"][1]) == (0.0, 15.0, 7.5)
    assert list(rows["shape"][1]) == [4, 4]
    assert rows.status.tolist() == ["ok", "ok", "error"]
    assert rows.error[2] == "SystemError: x" and math.isnan(rows.nbytes[2])
    count = duckdb.sql(
        f"select count(*) from read_parquet('{tmp_path}/iterations/*.parquet') "
        "where status = 'ok' and mean > 1"
    ).fetchall()[0][0]
    assert count == 2


def _context(max_value_bytes: int) -> RowContext:
    values = {
        "run_id": "r",
        "scenario": "s",
        "variant_id": "v1",
        **defaults(),
        "worker_id": 0,
        "pid": 1,
        "host": "h",
        "mnn_version": "3.6.1",
    }
    return RowContext(values=values, output_names=("y",), max_value_bytes=max_value_bytes)


def test_a_part_over_the_file_size_limit_keeps_its_rows_and_can_drop_values(tmp_path):
    """A real EFBIG from the kernel (RLIMIT_FSIZE): the flush raises StorageError naming the
    file, the rows stay buffered, and a flush without stored values then fits."""
    buffer = IterationBuffer(PartWriter(tmp_path / "iterations"))
    context = _context(max_value_bytes=1 << 20)
    for i in range(4):
        noise = os.urandom(256 << 10)  # incompressible: the part cannot shrink below 1 MiB
        buffer.add(
            context,
            IterationRecord(i, 1, 2, 3, 0, 0, STATUS_OK, [(0, "uint8", (len(noise),), noise)]),
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 << 10, hard))
    try:
        with pytest.raises(StorageError, match="File too large") as caught:
            buffer.flush()
        assert "part-000000.parquet" in caught.value.render()
        assert len(buffer) == 4 and not list((tmp_path / "iterations").iterdir())
        buffer.flush(keep_values=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    rows = ds.dataset(str(tmp_path / "iterations")).to_table().to_pandas()
    assert sorted(rows.iteration) == [0, 1, 2, 3] and rows["values"].isna().all()
    assert rows.digest.nunique() == 4  # digests and statistics survive without the values


def test_event_fields_are_the_event_schema_columns(tmp_path):
    """Every field is a column, ``params`` spreads over the factor columns, and an event
    written and read back keeps its factor values and per-thread iterations in flight."""
    fields = {f.name for f in dataclasses.fields(Event)} - {"params"}
    assert fields | set(defaults()) == set(EVENT_SCHEMA.names)
    writer = EventWriter(tmp_path / "events")
    params = {**defaults(), "threads": 3, "sharing": "interpreter"}
    writer.write(Event("r", "s", "v", 1, 2, EventKind.CRASH, in_flight=[4, None, 7], params=params))
    (row,) = ds.dataset(str(tmp_path / "events")).to_table().to_pylist()
    assert row["threads"] == 3 and row["sharing"] == "interpreter" and row["api"] == "session"
    assert row["in_flight"] == [4, None, 7]


def test_statistics_skip_outputs_they_cannot_read_and_go_on():
    """An unknown dtype or an empty output gets no statistics (never garbage), and the
    outputs after it in the batch still get theirs."""
    values = [b"\x01\x02", b"", np.array([1.0, 3.0], np.float32).tobytes()]
    stats = output_statistics(values, ["unknown", "float32", "float32"])
    assert stats["nan_count"] == [None, None, 0]
    assert stats["mean"] == [None, None, 2.0]
    block = output_statistics([np.arange(6, dtype=np.float32).tobytes()] * 2, ["float32"] * 2)
    assert block["max"] == [5.0, 5.0]


def test_statistics_of_rows_with_non_finite_values_stay_per_row():
    """Masked statistics are computed per row: one finite element is enough for min/max/mean,
    and each row's mean is its own."""
    rows = [
        np.array([np.nan, 5.0, np.inf], np.float32).tobytes(),
        np.array([1.0, np.nan, 3.0], np.float32).tobytes(),
    ]
    stats = output_statistics(rows, ["float32", "float32"])
    assert stats["min"] == [5.0, 1.0] and stats["max"] == [5.0, 3.0]
    assert stats["mean"] == [5.0, 2.0]
    assert stats["nan_count"] == [1, 1] and stats["inf_count"] == [1, 0]


def test_statistics_of_non_finite_rows_are_the_same_in_chunks(monkeypatch):
    """Big outputs with NaN are looked at a few columns at a time: every chunk size gives the
    statistics of the whole rows (counts summed, min of mins, mean of all finite elements)."""
    from stress.records import statistics

    rng = np.random.default_rng(3)
    block = rng.standard_normal((3, 1000)).astype(np.float32)
    block[0, [5, 500, 999]] = np.nan
    block[1, 17] = np.inf
    block[2, :] = np.nan  # no finite element: no min/max/mean
    finite = np.isfinite(block)
    wide = block.astype(np.float64)
    for chunk in (7, 1000, 1 << 20):
        monkeypatch.setattr(statistics, "CHUNK_ELEMENTS", chunk)
        nan, inf, low, high, mean = block_statistics(block)
        assert nan == [3, 0, 1000] and inf == [0, 1, 0]
        for row in (0, 1):
            values = wide[row][finite[row]]
            assert (low[row], high[row]) == (values.min(), values.max())
            assert mean[row] == pytest.approx(values.mean(), rel=1e-12)
        assert low[2] is high[2] is mean[2] is None


def test_parts_cut_row_groups_at_32_mib_however_big_the_values(tmp_path):
    """A reader decodes one row group at a time: rows of 20 MiB values get a group each,
    not one group of all of them (a part of 256 MiB outputs was one 1.5 GiB group)."""
    from stress.records.parts import PartWriter

    big = pa.table({"k": pa.array(range(4)), "values": pa.array([b"x" * (20 << 20)] * 4)})
    small = pa.table({"k": pa.array(range(1000)), "values": pa.array([b"y" * 10] * 1000)})
    writer = PartWriter(tmp_path)
    writer.write(big)
    writer.write(small)
    first, second = sorted(tmp_path.glob("part-*.parquet"))
    assert pq.ParquetFile(first).metadata.num_row_groups == 4
    assert pq.ParquetFile(second).metadata.num_row_groups == 1


def test_native_stack_events_are_folded_into_their_deaths():
    """A backtrace read after its death's event was written comes as an event of its own;
    readers see it in the death's ``native_stack``, and the stack event itself not at all."""
    from stress.records.events import Event, EventKind, _table, fold_native_stacks, native_stack_of

    death = Event("r", "s", "v1", 3, 111, EventKind.CRASH, native_stack="gdb was reading")
    other = Event("r", "s", "v1", 4, 222, EventKind.CRASH, native_stack="no core file")
    hang = Event("r", "s", "v2", 3, 111, EventKind.HANG, native_stack="attached")
    table = _table([death, other, hang, native_stack_of(death, "#0 frame_of_v1_w3")])
    folded = fold_native_stacks(table)
    assert folded["kind"].to_pylist() == ["crash", "crash", "hang"]
    assert folded["native_stack"].to_pylist() == ["#0 frame_of_v1_w3", "no core file", "attached"]
    assert fold_native_stacks(table.select(["kind", "variant_id"])).num_rows == 3
    assert fold_native_stacks(folded) == folded


def test_the_readers_of_a_run_import_nothing_of_the_coordinator():
    """Reading a run (records, parts, damage, the analysis's dataset layer) must not start
    the coordinator's machinery: the records layer knows nothing of who wrote them."""
    import subprocess
    import sys

    code = (
        "import sys, stress.analysis.dataset, stress.records.parts, stress.records.damage, "
        "stress.records.events\n"
        "print(sorted(m for m in sys.modules if m.startswith('stress.coordinator')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr


def test_stored_values_do_not_keep_their_records_alive_after_the_flush(tmp_path):
    """Records decoded one at a time hold their outputs as views of the bytes drained from the
    ring; once written, nothing may keep those bytes alive. pyarrow's ``pa.array`` leaks every
    memoryview it converts: a coordinator storing 16 MiB outputs grew 16 MiB an iteration."""
    buffer = IterationBuffer(PartWriter(tmp_path / "iterations"))
    drained = np.zeros(4096, np.uint8)  # stands for a drained run: views point into it
    alive = weakref.ref(drained)
    views = [memoryview(drained)[k * 1024 : (k + 1) * 1024] for k in range(3)]
    for i, view in enumerate(views):
        record = IterationRecord(i, 1, 2, 3, 0, 0, STATUS_OK, [(0, "uint8", (1024,), view)])
        buffer.add(_context(max_value_bytes=1 << 20), record)
    buffer.flush()
    del drained, views, view, record
    gc.collect()
    assert alive() is None, "the drained bytes outlived the flush"
    rows = ds.dataset(str(tmp_path / "iterations")).to_table()
    assert [len(v) for v in rows["values"].to_pylist()] == [1024, 1024, 1024]
