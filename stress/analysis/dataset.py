"""Open a run's Parquet datasets with the one schema defined in ``stress.records``."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from stress.errors import RunDirError
from stress.events import EVENT_SCHEMA
from stress.records import ITERATION_SCHEMA


def check_run_dir(run_dir: Path) -> None:
    if not (run_dir / "manifest.json").is_file():
        raise RunDirError(
            f"{run_dir} is not a run directory (no manifest.json)",
            fix="pass a directory made by `mnn-stress run`",
        )


def _dataset(directory: Path, schema: pa.Schema) -> ds.Dataset:
    files = sorted(str(p) for p in directory.glob("part-*.parquet")) if directory.is_dir() else []
    return ds.dataset(files, schema=schema, format="parquet")


def iterations(run_dir: Path) -> ds.Dataset:
    return _dataset(run_dir / "iterations", ITERATION_SCHEMA)


def events(run_dir: Path) -> ds.Dataset:
    return _dataset(run_dir / "events", EVENT_SCHEMA)
