"""Open a run's Parquet datasets with the one schema defined in ``stress.records.schema``.

The files are listed with ``records.parts.visible``, so a compaction going on beside the reader
never shows a row twice or hides one; a file that a compaction deletes between the listing
and the read makes the read list again (``read``). A damaged part (``stress.records.damage``) is not
listed; one that fails behind an intact Parquet frame is found, marked, and the read made again
without it. ``damaged_parts`` says afterwards which ones were skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.dataset as ds

from stress.errors import RunDirError
from stress.records.damage import DamagedPart, find_damaged, found_in, set_aside_in
from stress.records.events import EVENT_SCHEMA, fold_native_stacks
from stress.records.parts import sort_out, visible
from stress.records.rundir import RunLayout
from stress.records.schema import ITERATION_SCHEMA

T = TypeVar("T")
READ_ATTEMPTS = 10  # listings in a row that a compaction may overtake


def check_run_dir(run_dir: Path) -> None:
    """A run directory has a manifest, or rows (its manifest may be the damaged part)."""
    layout = RunLayout(run_dir)
    if not layout.manifest.is_file() and not layout.iterations.is_dir():
        raise RunDirError(
            f"{run_dir} is not a run directory (no {layout.MANIFEST}, no iterations/)",
            fix="pass a directory made by `mnn-stress run`",
        )


def damaged_parts(run_dir: Path) -> list[DamagedPart]:
    """The damaged parts of a run that readers skip (as found so far in this process, by
    footers and by reads), then those set aside into ``damaged/`` by compaction or resume."""
    datasets = RunLayout(run_dir).all_datasets()
    skipped = [found_in(p.path, run_dir) for d in datasets for p in sort_out(d).damaged]
    return skipped + [part for d in datasets for part in set_aside_in(d, run_dir)]


def read(directory: Path, schema: pa.Schema, consume: Callable[[ds.Dataset], T]) -> T:
    """``consume`` the dataset, again over a fresh listing when a compaction deleted a listed
    file before it was read, or when a part turned out damaged (then left out)."""
    attempt = 0
    while True:
        files = visible(directory)
        try:
            return consume(ds.dataset([str(f) for f in files], schema=schema, format="parquet"))
        except FileNotFoundError:
            attempt += 1
            if attempt == READ_ATTEMPTS:
                raise
        except (OSError, pa.ArrowException) as exc:
            if not find_damaged(files, exc):
                raise


def _table(directory: Path, schema: pa.Schema, **options: Any) -> pa.Table:
    """The dataset read whole (``options`` as for ``Dataset.to_table``)."""
    return read(directory, schema, lambda dataset: dataset.to_table(**options))


def read_iterations(run_dir: Path, consume: Callable[[ds.Dataset], T]) -> T:
    """``consume`` the iteration rows as a dataset (streamed), as ``read`` does."""
    return read(RunLayout(run_dir).iterations, ITERATION_SCHEMA, consume)


def iterations_table(run_dir: Path, **options: Any) -> pa.Table:
    return _table(RunLayout(run_dir).iterations, ITERATION_SCHEMA, **options)


def events_table(run_dir: Path, columns: list[str] | None = None, filter: Any = None) -> pa.Table:
    """The run's events, each death with the native stack gdb read after it was written
    (``events.fold_native_stacks``): read whole (events are few), folded, then filtered."""
    table = fold_native_stacks(_table(RunLayout(run_dir).events, EVENT_SCHEMA))
    if filter is not None:
        table = table.filter(filter)
    return table.select(columns) if columns is not None else table
