"""Compaction: a night's thousands of small part files merged into a handful per dataset.

While a run goes, every ``FANOUT`` consecutive parts of the same level (level = how many
times ``FANOUT`` their span is) are merged into one part of the next level, in a background
thread; at the end, consecutive small parts are packed into files of up to ``TARGET_BYTES``.
Each merge streams its sources into a hidden file, checks the row count, renames it into
place (named by the span it replaces) and only then deletes the sources: a reader that lists
with ``records.parts.visible`` sees every row exactly once at every instant, and a kill at any
point leaves either the sources or the merged file (or both, which readers and the next
compaction resolve). A damaged part (``stress.records.damage``), found by its footer or when a merge
cannot read it, is set aside into ``damaged/`` and the rest merged without it: a merge never
waits on a part that cannot be read.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stress.errors import StorageError
from stress.records.damage import DamagedPart, PartDamaged, find_damaged, set_aside
from stress.records.parts import (
    ROW_GROUP_BYTES,
    ROW_GROUP_ROWS,
    Part,
    dictionary_columns,
    dictionary_schema,
    part_name,
    sort_out,
    write_atomically,
    write_options,
)

FANOUT = 16
TARGET_BYTES = 256 << 20
BATCH_ROWS = 8 * 1024
BACKGROUND_NICE = 19  # the background merge thread's niceness


def level(part: Part) -> int:
    """0 for a part as written, 1 for a merge of FANOUT of them, and so on."""
    found, span = 0, part.span
    while span >= FANOUT:
        span //= FANOUT
        found += 1
    return found


def running_merge(parts: list[Part]) -> list[Part] | None:
    """The oldest run of FANOUT consecutive visible parts of one level, small enough to merge."""
    for start in range(len(parts) - FANOUT + 1):
        run = parts[start : start + FANOUT]
        if len({level(p) for p in run}) == 1 and _size(run) <= TARGET_BYTES:
            return run
    return None


def final_merges(parts: list[Part]) -> list[list[Part]]:
    """Consecutive small parts packed greedily, oldest first, into runs of at most
    TARGET_BYTES; parts of a quarter of that or more are left as they are."""
    runs: list[list[Part]] = [[]]
    for part in parts:
        size = _size([part])
        if size >= TARGET_BYTES // 4:
            runs.append([])
            continue
        if _size(runs[-1]) + size > TARGET_BYTES:
            runs.append([])
        runs[-1].append(part)
    return [run for run in runs if len(run) > 1]


def _size(parts: list[Part]) -> int:
    total = 0
    for part in parts:
        with contextlib.suppress(OSError):
            total += part.path.stat().st_size
    return total


def _never() -> bool:
    return False


class MergeCancelled(Exception):
    """A merge given up because the run was asked to stop: its sources are untouched."""


def merge(run: list[Part], schema: pa.Schema, cancelled: Callable[[], bool] = _never) -> Part:
    """Stream ``run`` into one part named by its span; delete the sources once it is visible.
    StorageError (sources untouched, nothing visible left) when it cannot be written;
    PartDamaged (the same) when a source cannot be read whole; MergeCancelled (the same)
    when ``cancelled()`` turns true between two batches."""
    directory = run[0].path.parent
    merged = Part(run[0].first, run[-1].last, directory / part_name(run[0].first, run[-1].last))

    def write(path: Path) -> None:
        try:
            expected = sum(_rows(part) for part in run)
            written = _stream(run, schema, path, cancelled)
        except pa.ArrowException as exc:  # a source of another schema: leave the run as it is
            raise OSError(f"cannot merge {run[0].path.name}..{run[-1].path.name}: {exc}") from exc
        if written != expected:
            raise OSError(f"merged {written} rows of {expected}")

    write_atomically(merged.path, write)
    for part in run:
        with contextlib.suppress(FileNotFoundError):
            part.path.unlink()
    return merged


def _stream(run: list[Part], schema: pa.Schema, path: Path, cancelled: Callable[[], bool]) -> int:
    """Copy every row of ``run`` into ``path`` in row groups of ROW_GROUP_ROWS rows or
    ROW_GROUP_BYTES, whichever comes first (memory stays bounded); rows written. Strings and
    bytes stay dictionaries from reading to writing (``parts.dictionary_columns``)."""
    columns = dictionary_columns(schema)
    stored = dictionary_schema(schema, columns)
    with pq.ParquetWriter(path, stored, **write_options(schema)) as writer:
        pending: list[pa.RecordBatch] = []
        rows = size = 0
        for part in run:
            for batch in _batches(part, columns):
                if cancelled():
                    raise MergeCancelled(f"merge of {run[0].path.name}..{run[-1].path.name}")
                pending.append(batch)
                rows, size = rows + batch.num_rows, size + batch.nbytes
                if rows >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
                    writer.write_table(pa.Table.from_batches(pending, stored))
                    pending, rows, size = [], 0, 0
        if pending:
            writer.write_table(pa.Table.from_batches(pending, stored))
    return pq.ParquetFile(path).metadata.num_rows


def _rows(part: Part) -> int:
    """The rows its footer holds; PartDamaged when the footer cannot be read."""
    with _reading(part):
        return pq.read_metadata(part.path).num_rows


def _batches(part: Part, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A source's rows batch by batch; PartDamaged when it fails because the part cannot be
    read whole."""
    with _reading(part):
        source = pq.ParquetFile(part.path, read_dictionary=columns)
        # use_threads=False: decoding stays in this (niced) thread, off Arrow's own pool
        yield from source.iter_batches(BATCH_ROWS, use_threads=False)


@contextlib.contextmanager
def _reading(part: Part) -> Iterator[None]:
    """Reading ``part``: PartDamaged when that fails because the part is damaged (a read of
    it whole fails too); other failures (another schema, the environment) pass as they are."""
    try:
        yield
    except (OSError, pa.ArrowException) as exc:
        if not isinstance(exc, FileNotFoundError) and find_damaged([part.path], exc):
            raise PartDamaged(part.path, str(exc)) from exc
        raise


def tidy(directory: Path) -> int:
    """Delete what a killed compaction left: sources beside their merged file, and unfinished
    hidden files (only call this while no other writer is at work). Returns how many. A
    damaged part whose rows no intact part holds is left (for ``set_aside``)."""
    covered = sort_out(directory).covered
    unfinished = list(directory.glob(".part-*.tmp"))
    for path in [part.path for part in covered] + unfinished:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return len(covered) + len(unfinished)


def set_aside_damaged(directory: Path, run_dir: Path) -> list[DamagedPart]:
    """Move the damaged parts whose rows no intact part holds into ``damaged/`` (only call
    this while no other writer is at work); paths in what is returned relative to
    ``run_dir``. OSError when one cannot be moved."""
    return [set_aside(part.path, run_dir) for part in sort_out(directory).damaged]


class Compactor:
    """Compacts some datasets in one background thread, one merge at a time. A merge that
    cannot be written is left (its sources stay readable) and kept in ``errors`` for the
    caller to report from its own thread; a damaged part is set aside and said in ``notes``."""

    def __init__(
        self,
        datasets: dict[Path, pa.Schema],
        room: Callable[[], int] | None = None,
        cancelled: Callable[[], bool] = _never,
    ) -> None:
        self.datasets = datasets
        self.room = room or (lambda: sys.maxsize)  # bytes a merged copy may take
        self.cancelled = cancelled  # true once the run is asked to stop: merges give up
        self.merges = 0
        self.errors: list[StorageError] = []
        self.notes: collections.deque[str] = collections.deque()  # appended by either thread
        self.set_aside: list[DamagedPart] = []
        self._stuck: set[Path] = set()  # damaged parts that could not be moved
        self._thread: threading.Thread | None = None

    def take_errors(self) -> list[StorageError]:
        taken, self.errors = self.errors, []
        return taken

    def take_notes(self) -> list[str]:
        taken = []
        while self.notes:
            taken.append(self.notes.popleft())
        return taken

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def step(self) -> None:
        """Start the next merge in the background if one is due and none is going."""
        if self.busy():
            return
        for directory, schema in self.datasets.items():
            run = running_merge(self._readable(directory))
            if run is not None and _size(run) <= self.room():
                self._thread = threading.Thread(
                    target=self._merge_behind, args=(run, schema), name="compaction", daemon=True
                )
                self._thread.start()
                return

    def finish(self) -> int:
        """Wait for the merge in progress, then pack every dataset (in this thread) until
        ``cancelled``. Returns how many merges were left undone for lack of room."""
        if self._thread is not None:
            self._thread.join()
        skipped = 0
        for directory, schema in self.datasets.items():
            tidy(directory)
            skipped += self._pack(directory, schema)
        return skipped

    def _pack(self, directory: Path, schema: pa.Schema) -> int:
        """The final merges of one dataset, packed again after a merge met a damaged part."""
        while True:
            before, skipped = len(self.set_aside), 0
            for run in final_merges(self._readable(directory)):
                if self.cancelled():
                    return skipped
                if _size(run) <= self.room():
                    self._merge(run, schema)
                else:
                    skipped += 1
            if len(self.set_aside) == before:
                return skipped

    def _readable(self, directory: Path) -> list[Part]:
        """The visible intact parts, once the damaged ones are set aside. None while a damaged
        part could not be moved: a merge must not span rows it does not hold."""
        listing = sort_out(directory, steady=False)  # no merge is going: step() waits for it
        for part in listing.damaged:
            self._set_aside(part.path)
        return [] if self._stuck & {p.path for p in listing.damaged} else listing.visible

    def _set_aside(self, path: Path) -> None:
        if path in self._stuck:
            return
        try:
            found = set_aside(path, path.parent.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            self._stuck.add(path)
            self.notes.append(
                f"compaction: {path} is damaged and cannot be set aside ({exc.strerror or exc}): "
                "its dataset is not compacted further"
            )
            return
        self.set_aside.append(found)
        self.notes.append(
            f"compaction set aside a damaged part of {path.parent.parent}: " + found.describe()
        )

    def _merge_behind(self, run: list[Part], schema: pa.Schema) -> None:
        """A merge in the background thread, at the lowest CPU priority (Linux nices threads
        one by one): housekeeping must not take the cores from the workers under test. A
        starved merge only waits; the final pass packs whatever is left."""
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        self._merge(run, schema)

    def _merge(self, run: list[Part], schema: pa.Schema) -> None:
        try:
            merge(run, schema, self.cancelled)
            self.merges += 1
        except MergeCancelled:
            pass
        except StorageError as exc:
            self.errors.append(exc)
        except PartDamaged as exc:  # set aside: the next merge goes on without it
            self._set_aside(exc.path)
