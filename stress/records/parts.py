"""Parquet part files (and the manifest): each one complete before it becomes visible.

A file is written under a hidden temporary name (``.part-….tmp``: pyarrow and DuckDB skip
names starting with ``.`` or ``_``) and renamed into place, so a reader of ``part-*.parquet``
never sees a half-written file, even when the coordinator is killed mid-write.

Parts are numbered in the order they are written (``part-000042.parquet``). Compaction
(``stress.records.compaction``) merges a run of them into one file named by the span it replaces
(``part-000000-000063.parquet``) and then deletes the sources; a reader lists files with
``visible``, which drops any part whose span lies inside another's, so it sees each row once
whether it lists before, during or after a compaction. A damaged part (``records.damage``: zero
bytes, truncated, unreadable pages) is never visible; ``sort_out`` says which ones lose rows.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stress.errors import StorageError
from stress.records.damage import aside_dir, damaged

ROW_GROUP_ROWS = 128 * 1024
ROW_GROUP_BYTES = 32 << 20  # a row group's rows in memory when written or read (values add up)
LISTINGS = 20  # at most, until two agree (a merge is renamed and its sources deleted in ms)
_NAME = re.compile(r"part-(\d+)(?:-(\d+))?\.parquet")


@dataclass(frozen=True, order=True)
class Part:
    """A complete part file and the sequence numbers it holds (first..last, inclusive)."""

    first: int
    last: int
    path: Path

    @property
    def span(self) -> int:
        return self.last - self.first + 1


def part_name(first: int, last: int) -> str:
    return f"part-{first:06d}.parquet" if first == last else f"part-{first:06d}-{last:06d}.parquet"


def listed(directory: Path, *, steady: bool = False) -> list[Part]:
    """Every complete part file in ``directory``, covered ones included, oldest first;
    ``steady``: listed until two listings agree, for a reader beside a compaction."""
    names = _steady_names(directory) if steady else _names(directory)
    found = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match:
            first = int(match[1])
            last = int(match[2]) if match[2] else first
            found.append(Part(first, last, directory / name))
    return sorted(found)


def _steady_names(directory: Path) -> set[str]:
    """The directory's names, listed until two listings in a row agree: one ``os.listdir``
    that runs while a merge renames its file in and deletes its sources can miss both, and a
    reader would lose the merged rows (seen under load: 50 of 59,150 rows)."""
    names = _names(directory)
    for _ in range(LISTINGS):
        again = _names(directory)
        if again == names:
            break
        names = again
    return names


def _names(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise StorageError.of(exc, directory) from exc


def split(parts: list[Part]) -> tuple[list[Part], list[Part]]:
    """(visible, covered): a part whose span lies inside another's (a compaction's source
    not deleted yet) is covered. One sweep, widest first among parts that start together."""
    visible: list[Part] = []
    covered: list[Part] = []
    reach = -1  # the highest sequence held by a visible part so far
    for part in sorted(parts, key=lambda p: (p.first, -p.last)):
        if part.last <= reach:
            covered.append(part)
        else:
            visible.append(part)
            reach = part.last
    return visible, covered


@dataclass(frozen=True)
class Listing:
    """A dataset's parts sorted out for a reader (or the compactor)."""

    visible: list[Part]  # intact parts that hold every intact row once, oldest first
    covered: list[Part]  # parts whose rows a visible part holds (a merge's leftover sources)
    damaged: list[Part]  # damaged parts whose rows no intact part holds: not read


def sort_out(directory: Path, *, steady: bool = True) -> Listing:
    """Damaged parts are left out before the covering is worked out: a damaged merged file
    does not hide the intact sources it was made of. ``steady=False`` only for the compactor
    between its merges: nothing else renames or deletes parts."""
    parts = listed(directory, steady=steady)
    broken = [part for part in parts if damaged(part.path)]
    left_out = set(broken)
    intact = [part for part in parts if part not in left_out]
    shown, covered = split(intact)
    held, lost = _held_by(broken, shown)
    return Listing(shown, sorted(covered + held), lost)


def _held_by(broken: list[Part], shown: list[Part]) -> tuple[list[Part], list[Part]]:
    """(held, lost): the damaged parts whose span lies inside a shown part's, and the rest.
    Shown parts do not overlap and are sorted, so each is found by bisection."""
    starts = [part.first for part in shown]
    held, lost = [], []
    for part in broken:
        k = bisect.bisect_right(starts, part.first) - 1
        inside = k >= 0 and part.last <= shown[k].last
        (held if inside else lost).append(part)
    return held, lost


def visible(directory: Path) -> list[Path]:
    """The part files a reader should read: every intact row exactly once, oldest first."""
    return [part.path for part in sort_out(directory).visible]


class PartWriter:
    """Writes tables as numbered, complete Parquet files in one dataset directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError.of(exc, directory) from exc
        # numbers go on past every part, those set aside as damaged too: no name is reused
        taken = listed(directory) + listed(aside_dir(directory))
        self.sequence = max((part.last + 1 for part in taken), default=0)
        self.bytes_written = 0

    def write_schema(self, schema: pa.Schema) -> None:
        """An empty part, where the dataset has no part yet: a reader (DuckDB, polars, a glob)
        finds the dataset and its columns before any row arrives, or when none ever does (a
        run without deaths has no event)."""
        if self.sequence == 0:  # no part yet, none set aside
            self._write(schema.empty_table())

    def write(self, table: pa.Table) -> None:
        """Write one part; StorageError (and nothing visible left behind) when it cannot."""
        if table.num_rows:
            self._write(table)

    def write_file(self, data: bytes) -> None:
        """Write one part already encoded elsewhere (a cluster node's, as it wrote it)."""
        final = self.directory / part_name(self.sequence, self.sequence)
        write_atomically(final, lambda path: path.write_bytes(data))
        self.sequence += 1
        self.bytes_written += len(data)

    def _write(self, table: pa.Table) -> None:
        final = self.directory / part_name(self.sequence, self.sequence)
        options = write_options(table.schema)
        rows = rows_per_group(table)
        write_atomically(
            final, lambda path: pq.write_table(table, path, row_group_size=rows, **options)
        )
        self.sequence += 1
        with contextlib.suppress(OSError):
            self.bytes_written += final.stat().st_size


def rows_per_group(table: pa.Table) -> int:
    """Rows per row group so that a group holds about ROW_GROUP_BYTES (at least one row): a
    reader then decodes one big output's group, not a whole part of them."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    return max(1, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))


def write_options(schema: pa.Schema) -> dict[str, object]:
    """How every part is written: zstd; min/max statistics on numbers and times only (those of
    strings cost about a fifth of a write and prune little in parts that mix variants); and no
    Arrow schema of its own, so a reader gets the schema's plain types from Parquet's (a test
    holds every column to that) even where a writer handed over dictionaries."""
    plain = [f.name for f in schema if not _is_bytes(f.type) and not pa.types.is_list(f.type)]
    return {"compression": "zstd", "write_statistics": plain, "store_schema": False}


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The string and binary columns: read and written as dictionaries when parts are merged,
    so a value repeated on every row (a variant's name, a deterministic output's digest and
    bytes) is decoded and encoded once per page, not once per row (7 us a row down to 0.4 to
    read a part with the tiny model's values stored)."""
    return [f.name for f in schema if _is_bytes(f.type)]


def dictionary_schema(schema: pa.Schema, columns: list[str]) -> pa.Schema:
    """``schema`` with ``columns`` as dictionaries (int32 indices), as pyarrow reads them."""
    return pa.schema(
        [f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in columns else f for f in schema]
    )


def _is_bytes(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return pa.types.is_string(kind) or pa.types.is_binary(kind)


def write_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a hidden temporary file beside ``final``, then rename it into place;
    StorageError (and no temporary file left) when that cannot be done. Other exceptions of
    ``write`` pass through, the temporary file deleted too."""
    temporary = final.with_name(f".{final.name}.tmp")
    try:
        write(temporary)
        os.replace(temporary, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        if isinstance(exc, OSError):
            raise StorageError.of(exc, final) from exc
        raise
