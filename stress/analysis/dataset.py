"""Open a run's Parquet datasets with the one schema defined in ``stress.records``.

The files are listed with ``stress.parts.visible``, so a compaction going on beside the reader
never shows a row twice or hides one; a file that a compaction deletes between the listing
and the read makes the read list again (``*_table``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from stress.errors import RunDirError
from stress.events import EVENT_SCHEMA
from stress.parts import visible
from stress.records import ITERATION_SCHEMA

READ_ATTEMPTS = 5


def check_run_dir(run_dir: Path) -> None:
    if not (run_dir / "manifest.json").is_file():
        raise RunDirError(
            f"{run_dir} is not a run directory (no manifest.json)",
            fix="pass a directory made by `mnn-stress run`",
        )


def _dataset(directory: Path, schema: pa.Schema) -> ds.Dataset:
    return ds.dataset([str(p) for p in visible(directory)], schema=schema, format="parquet")


def _table(directory: Path, schema: pa.Schema, **options: Any) -> pa.Table:
    """The dataset read whole (``options`` as for ``Dataset.to_table``), listed again when a
    compaction deleted a listed file before it was read."""
    for attempt in range(READ_ATTEMPTS):
        try:
            return _dataset(directory, schema).to_table(**options)
        except FileNotFoundError:
            if attempt == READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def iterations(run_dir: Path) -> ds.Dataset:
    return _dataset(run_dir / "iterations", ITERATION_SCHEMA)


def events(run_dir: Path) -> ds.Dataset:
    return _dataset(run_dir / "events", EVENT_SCHEMA)


def iterations_table(run_dir: Path, **options: Any) -> pa.Table:
    return _table(run_dir / "iterations", ITERATION_SCHEMA, **options)


def events_table(run_dir: Path, **options: Any) -> pa.Table:
    return _table(run_dir / "events", EVENT_SCHEMA, **options)
