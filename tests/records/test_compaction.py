"""Compaction: small parts merged without a reader ever seeing a row twice or missing one."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stress.analysis import dataset
from stress.analysis.scan import Scan, _padded
from stress.errors import StorageError
from stress.records import compaction
from stress.records.compaction import (
    FANOUT,
    Compactor,
    final_merges,
    level,
    merge,
    running_merge,
    tidy,
)
from stress.records.parts import Part, PartWriter, listed, split, visible
from stress.records.schema import ITERATION_SCHEMA

SCHEMA = pa.schema([pa.field("id", pa.int64())])


def write_parts(directory: Path, count: int, rows: int = 10, start: int = 0) -> PartWriter:
    writer = PartWriter(directory)
    for i in range(count):
        first = start + i * rows
        writer.write(pa.table({"id": pa.array(range(first, first + rows), pa.int64())}))
    return writer


def ids(directory: Path) -> list[int]:
    return dataset._table(directory, SCHEMA)["id"].to_pylist()


def test_a_merge_replaces_its_sources_with_one_file_named_by_its_span(tmp_path):
    write_parts(tmp_path, FANOUT + 3)
    run = running_merge(split(listed(tmp_path))[0])
    assert [p.first for p in run] == list(range(FANOUT))  # the oldest run of one level
    merged = merge(run, SCHEMA)
    assert merged.path.name == f"part-000000-{FANOUT - 1:06d}.parquet"
    assert [p.path.name for p in listed(tmp_path)][:2] == [
        merged.path.name,
        f"part-{FANOUT:06d}.parquet",
    ]
    assert len(listed(tmp_path)) == 4  # the sources are gone
    assert ids(tmp_path) == list(range((FANOUT + 3) * 10))  # every row once, in order
    assert PartWriter(tmp_path).sequence == FANOUT + 3  # numbering goes on past the span


def test_a_merge_cut_into_many_row_groups_keeps_every_row_once_in_order(tmp_path, monkeypatch):
    """A merge larger than a row group (here 25 rows) writes group after group: each row of
    the sources exactly once, in order, none carried into the next group again."""
    monkeypatch.setattr(compaction, "ROW_GROUP_ROWS", 25)
    monkeypatch.setattr(compaction, "BATCH_ROWS", 7)
    write_parts(tmp_path, FANOUT)
    merged = merge(running_merge(split(listed(tmp_path))[0]), SCHEMA)
    assert ids(tmp_path) == list(range(FANOUT * 10))
    assert pq.ParquetFile(merged.path).metadata.num_row_groups > 1


def test_sources_left_by_a_killed_compaction_are_hidden_from_readers_and_then_tidied(tmp_path):
    write_parts(tmp_path, FANOUT)
    sources = listed(tmp_path)
    kept = tmp_path / "kept"
    kept.mkdir()
    for part in sources:
        shutil.copy(part.path, kept / part.path.name)
    merge(sources, SCHEMA)
    for part in sources:  # as if killed after the rename, before deleting the sources
        shutil.copy(kept / part.path.name, part.path)
    (tmp_path / ".part-000000-000015.parquet.tmp").write_bytes(b"half a file")
    assert len(listed(tmp_path)) == FANOUT + 1
    assert len(visible(tmp_path)) == 1
    assert ids(tmp_path) == list(range(FANOUT * 10))
    assert tidy(tmp_path) == FANOUT + 1
    assert [p.path.name for p in listed(tmp_path)] == ["part-000000-000015.parquet"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_widest_span_wins_and_parts_outside_it_stay_visible(tmp_path):
    parts = [Part(0, 15, tmp_path / "a"), Part(3, 3, tmp_path / "b"), Part(16, 16, tmp_path / "c")]
    parts += [Part(0, 255, tmp_path / "d"), Part(256, 256, tmp_path / "e")]
    shown, covered = split(parts)
    assert [p.path.name for p in shown] == ["d", "e"]
    assert sorted(p.path.name for p in covered) == ["a", "b", "c"]


def test_levels_and_the_running_policy_merge_like_with_like(tmp_path):
    assert [level(Part(0, n - 1, tmp_path)) for n in (1, 15, 16, 255, 256)] == [0, 0, 1, 1, 2]
    big = [Part(i * 16, i * 16 + 15, tmp_path / f"x{i}") for i in range(FANOUT - 1)]
    small = [Part(240 + i, 240 + i, tmp_path / f"y{i}") for i in range(FANOUT - 1)]
    assert running_merge(big + small) is None  # 15 of each level: nothing due yet
    due = big + small + [Part(255, 255, tmp_path / "z")]
    assert running_merge(due) == small + [due[-1]]


def test_the_final_pass_packs_small_parts_and_leaves_large_ones(tmp_path, monkeypatch):
    monkeypatch.setattr(compaction, "TARGET_BYTES", 4000)
    sizes = [100, 100, 1500, 100, 100, 100]  # 1500 >= a quarter of the target
    parts = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"p{i}"
        path.write_bytes(b"x" * size)
        parts.append(Part(i, i, path))
    assert final_merges(parts) == [parts[0:2], parts[3:6]]
    monkeypatch.setattr(compaction, "TARGET_BYTES", 420)  # four of 100 fit, not five
    small = [parts[i] for i in (0, 1, 3, 4, 5)]
    assert final_merges(small) == [small[:4]]  # the fifth alone is no merge


def test_a_source_of_another_schema_stops_the_merge_and_touches_nothing(tmp_path):
    write_parts(tmp_path, 2)
    PartWriter(tmp_path).write(pa.table({"other": ["a"]}))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(StorageError, match="cannot merge"):
        merge(listed(tmp_path), SCHEMA)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_merge_that_cannot_be_made_is_reported_and_leaves_the_sources(tmp_path):
    """(A damaged source is set aside instead: tests/records/test_damage.py.)"""
    write_parts(tmp_path, FANOUT)
    pq.write_table(pa.table({"other": ["a"]}), tmp_path / "part-000003.parquet")  # can't merge
    before = sorted(p.name for p in tmp_path.iterdir())
    compactor = Compactor({tmp_path: SCHEMA})
    compactor.step()
    compactor.finish()
    assert compactor.merges == 0
    errors = compactor.take_errors()  # the running merge's and the final pass's
    assert len(errors) == 2
    assert all("part-000000.parquet..part-000015.parquet" in e.message for e in errors)
    assert compactor.errors == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_reader_beside_a_writer_and_the_compactor_sees_every_row_exactly_once(tmp_path):
    """Parts keep arriving while merges run in the background; every read by the dataset
    reader (and by the DuckDB scan) returns ids 0..n-1 each once, n never going down."""
    writer = PartWriter(tmp_path)
    compactor = Compactor({tmp_path: SCHEMA})
    written, stop, seen, problems = [0], threading.Event(), [], []

    def write() -> None:
        while not stop.is_set():
            first = written[0]
            writer.write(pa.table({"id": pa.array(range(first, first + 50), pa.int64())}))
            written[0] = first + 50
            compactor.step()
            time.sleep(0.001)

    def read() -> None:
        while not stop.is_set():
            floor = written[0]
            got = sorted(ids(tmp_path))
            if got != list(range(len(got))) or len(got) < floor:
                problems.append((floor, len(got), len(set(got))))
            seen.append(len(got))

    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    time.sleep(4)
    stop.set()
    for thread in threads:
        thread.join()
    compactor.finish()
    assert problems == []
    assert len(seen) > 20 and seen == sorted(seen)
    assert compactor.merges >= 3  # the reads really overlapped merges
    assert len(listed(tmp_path)) <= 2
    assert ids(tmp_path) == list(range(written[0]))


def test_the_duckdb_scan_lists_again_when_a_merge_deleted_a_listed_part(tmp_path):
    for i in range(FANOUT):
        table = _padded(pa.table({"variant_id": ["v"] * 5, "iteration": range(i * 5, i * 5 + 5)}))
        PartWriter(tmp_path).write(table)
    with Scan(tmp_path) as scan:  # its views list the FANOUT parts...
        merge(listed(tmp_path), ITERATION_SCHEMA)  # ...which a merge then deletes
        query = "SELECT count(*) AS n, count(DISTINCT iteration) AS d FROM run_rows"
        (row,) = scan.table(query).to_pylist()
    assert row == {"n": FANOUT * 5, "d": FANOUT * 5}


def test_a_listing_that_a_merge_raced_is_listed_again(tmp_path, monkeypatch):
    """One os.listdir that runs while a merge renames its file in and deletes its sources can
    miss both; the parts are listed until two listings agree, so no reader loses those rows."""
    write_parts(tmp_path, 3)
    names = sorted(p.path.name for p in listed(tmp_path))
    raced = [names[0]]  # the merged file not yet seen, its sources already gone
    answers = iter([raced, names, names])
    monkeypatch.setattr("stress.records.parts.os.listdir", lambda _: next(answers))
    assert [p.path.name for p in listed(tmp_path, steady=True)] == names
