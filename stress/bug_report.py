"""A bug in mnn-stress itself (an exception nobody expected): the full traceback goes to a
file, the terminal gets one line saying where, and the exit status is ``ExitCode.BUG``, so
that cron never mistakes it for a finding (1) or a clean night (0). Standard library only:
this is what runs when everything else may be broken (``stress.errors`` is too)."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from stress.cache_root import cache_dir, make
from stress.errors import HarnessBug

FILE_PREFIX = "bug-"  # RUN_DIR/bug-<UTC time>-<command>-<pid>.txt
_SHOWN_CHARS = 300  # of the exception's message, in the one line


def cache_folder() -> Path:
    """Where tracebacks go when the command has no run directory it can write to: beside the
    model cache (``$MNN_STRESS_CACHE``, default ``~/.cache/mnn-stress``)."""
    return cache_dir() / "bugs"


def write_traceback(exc: BaseException, command: str, run_dir: Path | None = None) -> Path | None:
    """The traceback, with what was run and on what (``write_text``)."""
    return write_text("".join(traceback.format_exception(exc)), command, run_dir)


def write_text(text: str, command: str, run_dir: Path | None = None) -> Path | None:
    """``text`` after a header, in the first folder that takes it: the run directory (never
    created here), the cache folder, the temporary folder. None when none can be written."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = f"{FILE_PREFIX}{stamp}-{command.replace(' ', '-')}-{os.getpid()}.txt"
    text = _header(command) + text
    folders = [run_dir] if run_dir is not None and run_dir.is_dir() else []
    folders += [cache_folder, lambda: Path(tempfile.gettempdir())]
    for folder in folders:
        try:  # anything: a bug report must not fail on what made the bug
            where = folder() if callable(folder) else folder
            make(where)
            path = where / name
            path.write_text(text)
            return path.absolute()
        except Exception:
            continue
    return None


def record(exc: BaseException, command: str, run_dir: Path | None = None) -> Path | None:
    """``write_traceback``, or the traceback on stderr when no file can be written."""
    path = write_traceback(exc, command, run_dir)
    if path is None:
        traceback.print_exception(exc, file=sys.stderr)
    return path


def _header(command: str) -> str:
    try:
        version = metadata.version("mnn-stress")
    except metadata.PackageNotFoundError:
        version = "not installed"
    return (
        f"mnn-stress {version} ({command}), Python {platform.python_version()} on "
        f"{platform.platform()}, {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
        f"command line: {' '.join(sys.argv)}\n\n"
    )


def describe(exc: BaseException) -> str:
    """The exception's type and the start of its message, on one line."""
    message = " ".join(str(exc).split())
    if len(message) > _SHOWN_CHARS:
        message = message[:_SHOWN_CHARS] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def where(path: Path | None) -> str:
    """How the one line ends: the file, or (when none could be written) the stderr above."""
    if path is None:
        return "no file could be written: the traceback is printed above"
    return f"full traceback in {path}"


def one_line(exc: BaseException, path: Path | None, what: str = "") -> str:
    """What the terminal (and a failed run's manifest) says; ``what`` failed, if known."""
    failed = f"{what}: " if what else ""
    return (
        f"bug in mnn-stress (not a finding): {failed}{describe(exc)}; {where(path)}; "
        "please report it"
    )


def harness_bug(exc: BaseException, what: str, run_dir: Path | None) -> HarnessBug:
    """The run's own bug: its traceback written (into ``run_dir`` if it can), and the
    HarnessBug that says ``what`` failed and where the traceback is."""
    return HarnessBug(one_line(exc, record(exc, "run", run_dir), what))
