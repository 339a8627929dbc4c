"""A run's iteration rows as DuckDB views, so analysis aggregates them where they lie: no step
loads a whole run into memory (DuckDB streams the Parquet parts and spills to a temporary
directory beyond its memory limit), and every answer it returns is small (one row per variant,
worker or distinct output).

Views: ``run_rows`` (every row), ``fetched`` (rows recorded when their iteration ran),
``later_reads``
(outputs read again after the loop, ``output_lifetime``), ``its`` (one fetch row per iteration:
status, worker, time, latency, memory).

Damaged parts (``records.damage``) are left out of the views: by their footers when listed, and
when a query fails on one behind an intact Parquet frame (found, marked, the views made again).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pyarrow as pa

from stress.analysis.dataset import READ_ATTEMPTS
from stress.records.damage import find_damaged
from stress.records.parts import visible
from stress.records.schema import ITERATION_SCHEMA

if TYPE_CHECKING:
    from types import ModuleType

T = TypeVar("T")

MEMORY_LIMIT = "1GB"
THREADS = 2

_VIEWS = """
CREATE OR REPLACE VIEW fetched AS
    SELECT * FROM run_rows WHERE observation IS NULL OR observation = 'fetch';
CREATE OR REPLACE VIEW later_reads AS SELECT * FROM run_rows WHERE observation <> 'fetch';
CREATE OR REPLACE TEMP TABLE first_outputs AS
    SELECT variant_id, min(output_name) AS first_output FROM fetched GROUP BY variant_id;
CREATE OR REPLACE VIEW its AS
    SELECT f.* FROM fetched f JOIN first_outputs USING (variant_id)
    WHERE f.output_name IS NULL OR f.output_name = first_output;
"""


def _duckdb() -> ModuleType:
    """DuckDB, imported when a scan begins: commands that read no rows start without it, and a
    process that imported the rest of ``stress`` can still fork (DuckDB's import starts a
    thread that a forked child would wait for at its exit)."""
    import duckdb

    return duckdb


def _not_the_files() -> tuple[type[Exception], ...]:
    """A query's own mistakes and the environment's (memory, an interrupt): never a damaged
    part (damage raises IOException, InvalidInput, or a bare duckdb.Error when a page header
    does not decode)."""
    duckdb = _duckdb()
    return (
        duckdb.BinderException,
        duckdb.ParserException,
        duckdb.CatalogException,
        duckdb.OutOfMemoryException,
        duckdb.InterruptException,
    )


def _file_at_fault(failure: BaseException) -> bool:
    """Whether a failed DuckDB read can be a part's fault (``damage.find_damaged``)."""
    return isinstance(failure, _duckdb().Error) and not isinstance(failure, _not_the_files())


class Scan:
    """The iteration rows of ``directory`` (``RUN_DIR/iterations``), or of a table already in
    memory with some of the schema's columns (tests, small inputs). A context manager."""

    def __init__(self, source: Path | pa.Table) -> None:
        self._spill = tempfile.mkdtemp(prefix="mnn-stress-duckdb-")
        self.con = _duckdb().connect(
            config={
                "memory_limit": MEMORY_LIMIT,
                "threads": THREADS,
                "temp_directory": self._spill,
            }
        )
        self.source = source
        self._files: list[Path] = []
        self._ready = False
        self._retrying(lambda: None)

    def _rows(self, source: Path | pa.Table) -> None:
        files = [] if isinstance(source, pa.Table) else _parts(source)
        if self._files and files != self._files:
            _relisted[0] += 1
        self._files = files
        if files:
            listed = ", ".join(_quoted(str(f)) for f in files)
            parquet = f"read_parquet([{listed}], union_by_name = true)"
            self.con.execute(f"CREATE OR REPLACE VIEW run_rows AS SELECT * FROM {parquet}")
            return
        table = _padded(source) if isinstance(source, pa.Table) else ITERATION_SCHEMA.empty_table()
        self.con.register("rows_table", table)
        self.con.execute("CREATE OR REPLACE VIEW run_rows AS SELECT * FROM rows_table")

    def _retrying(self, query: Callable[[], T]) -> T:
        """``query`` over the views; when a compaction deleted a listed part meanwhile, or a
        part turned out damaged, the parts are listed again, the views made again, and the
        query repeated (a damaged part is not counted as an attempt: each is found once)."""
        attempt = 0
        while True:
            try:
                if not self._ready:
                    self._rows(self.source)
                    self.con.execute(_VIEWS)
                    self._ready = True
                return query()
            except _duckdb().Error as exc:
                self._ready = False
                if isinstance(self.source, pa.Table) or isinstance(exc, _not_the_files()):
                    raise
                if find_damaged(self._files, exc, self._read_whole, _file_at_fault):
                    continue
                attempt += 1
                if not isinstance(exc, _duckdb().IOException) or attempt == READ_ATTEMPTS:
                    raise

    def _read_whole(self, path: Path) -> None:
        """Every value of one part, decoded by DuckDB (the reader that failed), in batches."""
        result = self.con.execute("SELECT * FROM read_parquet(?)", [str(path)])
        for _ in result.to_arrow_reader(64 * 1024):
            pass

    def table(self, sql: str, parameters: list | None = None) -> pa.Table:
        """A query's answer as an Arrow table (keep answers small)."""
        return self._retrying(lambda: self.con.execute(sql, parameters or []).to_arrow_table())

    def register(self, name: str, table: pa.Table) -> None:
        """A small table (grades, references) for queries to join with."""
        self.con.register(name, table)

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_relisted = [0]


def relisted() -> int:
    """How many times a scan in this process found other parts than it had listed (a running
    run's compaction, a new part): answers before and after come from different rows, so an
    analysis that saw it does its work again."""
    return _relisted[0]


def _padded(table: pa.Table) -> pa.Table:
    """Some of the schema's columns as iteration rows: the others null."""
    columns = {}
    for field in ITERATION_SCHEMA:
        if field.name in table.column_names:
            columns[field.name] = table[field.name].cast(field.type)
        else:
            columns[field.name] = pa.nulls(table.num_rows, field.type)
    return pa.table(columns, schema=ITERATION_SCHEMA)


def _parts(directory: Path) -> list[Path]:
    """The complete part files, each row once (``stress.records.parts.visible``)."""
    return visible(directory)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
