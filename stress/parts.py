"""Parquet part files (and the manifest): each one complete before it becomes visible.

A file is written under a hidden temporary name (``.part-….tmp``: pyarrow and DuckDB skip
names starting with ``.`` or ``_``) and renamed into place, so a reader of ``part-*.parquet``
never sees a half-written file, even when the coordinator is killed mid-write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stress.errors import StorageError


class PartWriter:
    """Writes tables as numbered, complete Parquet files in one dataset directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError.of(exc, directory) from exc
        self.sequence = len(list(directory.glob("part-*.parquet")))

    def write(self, table: pa.Table) -> None:
        """Write one part; StorageError (and nothing visible left behind) when it cannot."""
        if table.num_rows == 0:
            return
        final = self.directory / f"part-{self.sequence:06d}.parquet"
        write_atomically(final, lambda path: pq.write_table(table, path, compression="zstd"))
        self.sequence += 1


def write_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a hidden temporary file beside ``final``, then rename it into place;
    StorageError (and no temporary file left) when that cannot be done."""
    temporary = final.with_name(f".{final.name}.tmp")
    try:
        write(temporary)
        os.replace(temporary, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise StorageError.of(exc, final) from exc
