"""Damaged part files: a named state, found where parts are listed and where they are read.

Parts are renamed into place complete but not fsynced, so after a machine crash a part can
be zero bytes, truncated, or hold zeroed pages behind an intact-looking name. Listing checks
each part's Parquet frame (``damage_of``: once per path, size and mtime, so readers do not
pay twice); a read that fails behind an intact frame finds its culprit with
``find_damaged``, which marks it.
Readers then skip damaged parts and say so; compaction and ``run --resume`` set them aside
into ``damaged/<dataset>/`` beside the dataset (``set_aside``), where no reader looks, each
with a ``<name>.json`` saying what was wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from stress.errors import first_line
from stress.records.rundir import RunLayout

CHECKS_KEPT = 200_000  # frame checks remembered per process (a long night's parts, merged)
MAGIC = b"PAR1"  # a Parquet file starts and ends with it


@dataclass(frozen=True)
class DamagedPart:
    """A part file that cannot be read whole: its rows are not read (in the manifest's
    ``damaged`` list, and in the summary)."""

    dataset: str  # its dataset folder, relative to the run directory ("reference/events")
    file: str  # its name in that folder
    size: int  # bytes
    error: str  # what is wrong with it
    rows: int | None  # as its footer says; None when the footer is unreadable too
    when: str  # when it was found damaged (UTC, ISO)
    set_aside: str | None = None  # where it was moved, relative to the run directory

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DamagedPart:
        """Strict: an unknown or missing key raises TypeError (never a silent null)."""
        return cls(**data)  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line: which file, what is wrong, how many rows are not read."""
        where = f"{self.dataset}/{self.file}"
        moved = f", set aside as {self.set_aside}" if self.set_aside else ""
        rows = "an unknown number of rows" if self.rows is None else _rows(self.rows)
        return f"{where} ({_size(self.size)}{moved}): {self.error}; {rows} not read"


class PartDamaged(Exception):
    """A part file that failed a whole read (marked damaged): its path and why."""

    def __init__(self, path: Path, error: str) -> None:
        self.path = path
        self.error = error
        super().__init__(f"{path}: {error}")


_errors: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime) -> why damaged
_marked = [0]  # parts found damaged by a read so far (``marked``)


def damage_of(path: Path) -> str | None:
    """Why the part is damaged; None when nothing is known wrong with it, or it is gone
    (deleted by a compaction since it was listed). Its Parquet frame (magic bytes at both
    ends, a footer that fits) is checked once per path, size and mtime: a few microseconds,
    where parsing the footer takes hundreds."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key in _errors:
        return _errors[key]
    if len(_errors) >= CHECKS_KEPT:
        _errors.clear()
    found = _errors[key] = _frame(path, stat.st_size)
    return found


def _frame(path: Path, size: int) -> str | None:
    """Why the file's frame is wrong, or None. OSError when it cannot be opened or read:
    that is the environment's doing (permissions, open files, memory), not the file's."""
    if size == 0:
        return "empty"
    try:
        with open(path, "rb") as part:
            head = part.read(len(MAGIC))
            part.seek(max(0, size - 8))
            tail = part.read(8)
    except FileNotFoundError:
        return None
    footer = int.from_bytes(tail[:4], "little") if len(tail) == 8 else size
    if tail[4:] != MAGIC or footer + 12 > size:
        return "no Parquet footer at its end (truncated, or zeroed)"
    if head != MAGIC:
        return "no Parquet magic at its start (zeroed)"
    return None


def damaged(path: Path) -> bool:
    return damage_of(path) is not None


def mark(path: Path, error: str) -> None:
    """Remember ``path`` (as it is now) as damaged: a whole read of it failed."""
    with contextlib.suppress(FileNotFoundError):
        stat = path.stat()
        _errors[(str(path), stat.st_size, stat.st_mtime_ns)] = error
        _marked[0] += 1


def marked() -> int:
    """How many parts reads have found damaged in this process: an analysis whose reads found
    one part-way (some of its answers counted the part's rows) does its work again."""
    return _marked[0]


def footer_rows(path: Path) -> int | None:
    """The rows a part's footer says it holds; None when the footer cannot be read."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def read_whole(path: Path) -> None:
    """Decode every page of ``path`` with pyarrow (memory: one batch at a time)."""
    for _ in pq.ParquetFile(path).iter_batches(use_threads=False):
        pass


# Arrow's errors about the request (a missing column, a wrong type): damage names its file
_QUERY_MISTAKES = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowKeyError,
    pa.ArrowNotImplementedError,
)


def file_at_fault(failure: BaseException) -> bool:
    """Whether a failed Arrow read can be the file's fault (its bytes do not decode), and not
    the environment's: memory, open files, permissions, an interrupt (an OSError with an
    errno, a MemoryError). Such failures are raised, never taken for damage."""
    if isinstance(failure, MemoryError) or not isinstance(failure, OSError | pa.ArrowException):
        return False
    return not (isinstance(failure, OSError) and failure.errno is not None)


def find_damaged(
    paths: list[Path],
    failure: BaseException,
    read: Callable[[Path], None] = read_whole,
    at_fault: Callable[[BaseException], bool] = file_at_fault,
) -> list[Path]:
    """Which of ``paths`` a read that raised ``failure`` failed on: the files its message
    names, else every one (unless it is one of Arrow's argument errors, which name no file
    when the query itself is wrong), each read whole with ``read``; each that fails is
    marked damaged. Empty: the failure was not the files'
    fault (``at_fault``; a deleted file is not damaged either). A failure of the environment
    while reading a file whole is raised."""
    if not at_fault(failure):
        return []
    named = [path for path in paths if str(path) in str(failure)]
    if not named and isinstance(failure, _QUERY_MISTAKES):
        return []
    return [path for path in named or paths if _fails(path, read, at_fault)]


def _fails(
    path: Path, read: Callable[[Path], None], at_fault: Callable[[BaseException], bool]
) -> bool:
    if damaged(path):
        return True
    try:
        read(path)
    except Exception as exc:
        if not path.exists():
            return False  # deleted meanwhile (compaction): not damaged
        if not at_fault(exc):
            raise
        said = first_line(exc).lstrip().replace(str(path), path.name)
        mark(path, f"unreadable behind an intact Parquet frame: {said}")
        return True
    return False


def aside_dir(directory: Path) -> Path:
    """Where a dataset's damaged parts are set aside: ``ROOT/damaged/<dataset>/`` (ROOT: the
    run directory, or its reference pass)."""
    return RunLayout(directory.parent).damaged / directory.name


def set_aside(path: Path, run_dir: Path) -> DamagedPart:
    """Move a damaged part into ``aside_dir``, keeping its name (part numbers stay taken),
    with a ``<name>.json`` beside it saying what was wrong; what was moved, with paths
    relative to ``run_dir``. OSError when it cannot be moved."""
    error, rows, size = damage_of(path), footer_rows(path), path.stat().st_size
    folder = aside_dir(path.parent)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    copies = 1
    while target.exists():  # never overwrite one set aside before
        target, copies = folder / f"{path.name}.{copies}", copies + 1
    os.replace(path, target)
    part = DamagedPart(
        dataset=str(path.parent.relative_to(run_dir)),
        file=path.name,
        size=size,
        error=error or "unknown",
        rows=rows,
        when=_now(),
        set_aside=str(target.relative_to(run_dir)),
    )
    with contextlib.suppress(OSError):  # the part itself is aside: the note is a courtesy
        _why(target).write_text(json.dumps(part.to_dict()))
    return part


def _why(target: Path) -> Path:
    return target.with_name(f"{target.name}.json")


def set_aside_in(directory: Path, run_dir: Path) -> list[DamagedPart]:
    """Every part set aside from ``directory`` (a dataset of the run at ``run_dir``)."""
    folder = aside_dir(directory)
    try:
        names = sorted(n for n in os.listdir(folder) if not n.endswith(".json"))
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        path = folder / name
        with contextlib.suppress(FileNotFoundError):
            found.append(_recorded(path, directory, run_dir))
    return found


def _recorded(path: Path, directory: Path, run_dir: Path) -> DamagedPart:
    """A set-aside part as its ``.json`` tells it (else as its footer does); paths relative
    to ``run_dir`` whoever set it aside."""
    original = path.name.rsplit(".parquet", 1)[0] + ".parquet"
    dataset, aside = str(directory.relative_to(run_dir)), str(path.relative_to(run_dir))
    try:
        told = DamagedPart.from_dict(json.loads(_why(path).read_text()))
        return dataclasses.replace(told, dataset=dataset, file=original, set_aside=aside)
    except (OSError, ValueError, TypeError):
        error = damage_of(path) or "set aside as damaged (why was not recorded)"
        size = path.stat().st_size
        return DamagedPart(dataset, original, size, error, footer_rows(path), "unknown", aside)


def found_in(path: Path, run_dir: Path) -> DamagedPart:
    """A damaged part still in its dataset (skipped by readers), as found now."""
    size = path.stat().st_size if path.exists() else 0
    return DamagedPart(
        dataset=str(path.parent.relative_to(run_dir)),
        file=path.name,
        size=size,
        error=damage_of(path) or "unknown",
        rows=footer_rows(path),
        when=_now(),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _rows(count: int) -> str:
    return f"{count:,} row" + ("" if count == 1 else "s")


def _size(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    return f"{size / 1024:.1f} KiB" if size < 1 << 20 else f"{size / 2**20:.1f} MiB"
