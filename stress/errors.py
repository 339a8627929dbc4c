"""User-facing errors: each carries where the problem is and how to fix it, never a traceback."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from stress.exit_codes import ExitCode


class StressError(Exception):
    """An error that says where it is and how to fix it; the CLI prints it as one message
    and exits with its ``exit_code``: the user's to fix (2), a run that cannot go on
    (``RunFailure``, 3), or a bug of ours that stopped a run (``HarnessBug``, 70)."""

    exit_code = ExitCode.USER_ERROR

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.line = line
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        head = f"{where}: " if where else ""
        key = f"{self.key}: " if self.key else ""
        text = f"{head}{key}{self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text


class ScenarioError(StressError):
    """A scenario file that cannot be parsed or does not validate."""


class ModelError(StressError):
    """A model that cannot be found, built, converted or inspected."""


class EnvError(StressError):
    """A cached MNN environment (``mnn_version``) that cannot be created or does not work."""


class RunDirError(StressError):
    """A run directory that cannot be created or read."""


class RunFailure(StressError):
    """The harness cannot go on with a run (results cannot be written, workers cannot be
    started): the run stops cleanly, keeps what it can, and exits non-zero."""

    exit_code = ExitCode.RUN_FAILED


class HarnessBug(RunFailure):
    """mnn-stress's own code failed (an exception nobody expected; never a finding): the run
    stops and says so in its manifest; the traceback is in a file the one line names
    (``stress.bug_report.harness_bug`` writes it and makes this)."""

    exit_code = ExitCode.BUG


class StorageError(RunFailure):
    """Results cannot be written (full disk, file-size limit, read-only file system)."""

    @classmethod
    def of(cls, exc: OSError, path: Path | str) -> StorageError:
        """Name the file, the file system it is on and its free space."""
        mount, free = where_stored(Path(path))
        room = f"{free / 2**20:.1f} MiB free on {mount}" if free is not None else f"on {mount}"
        return cls(
            f"cannot write results: {exc.strerror or exc} ({room})",
            file=str(path),
            fix="free space on that disk (or raise `ulimit -f`), or choose another --out",
        )


def where_stored(path: Path) -> tuple[str, int | None]:
    """The mount point holding ``path`` and its free bytes (None when it cannot be read)."""
    probe = path.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    mount = probe
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        return str(mount), shutil.disk_usage(probe).free
    except OSError:
        return str(mount), None


class MachineRefused(StressError):
    """The machine refused what a command needed (a file it may not read or write, a full
    disk, memory): the user's to fix, never a finding and never a bug of ours. Only these
    errnos: a missing file or a folder where a file should be is a path someone got wrong,
    and when that someone is mnn-stress it is a bug; paths the user gives are checked where
    they are used."""

    ERRNOS = frozenset(
        (
            errno.EACCES,
            errno.EPERM,
            errno.EROFS,
            errno.ENOSPC,
            errno.EDQUOT,
            errno.EFBIG,
            errno.EMFILE,
            errno.ENFILE,
            errno.EIO,
            errno.ENOMEM,
            errno.ENAMETOOLONG,
        )
    )

    @classmethod
    def of(cls, exc: OSError | MemoryError) -> MachineRefused:
        if isinstance(exc, MemoryError):
            return cls(
                "ran out of memory",
                fix="free memory (or raise `ulimit -v`), or ask for less: one run, --variant",
            )
        what = exc.strerror or str(exc)
        where = "" if exc.filename else " (writing the output, or a file it did not name)"
        return cls(
            f"the machine refused: {what}{where}", file=exc.filename, fix=_FIXES.get(exc.errno)
        )


_FIXES = {
    errno.EACCES: "check the file's permissions, or choose another path",
    errno.EPERM: "check the file's permissions, or choose another path",
    errno.EROFS: "choose a path on a writable file system",
    errno.ENOSPC: "free space on that disk, or choose another path",
    errno.EDQUOT: "free space within your disk quota, or choose another path",
    errno.EFBIG: "raise `ulimit -f`, or choose another path",
    errno.EMFILE: "raise `ulimit -n`",
    errno.ENFILE: "close files elsewhere on the machine, or raise fs.file-max",
    errno.EIO: "the disk reported an I/O error: check it (dmesg) before trusting its files",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOMEM: "free memory, or ask for less",
}


def first_line(exc: BaseException) -> str:
    """What an exception says, in one line: its first line that is not blank, else its type."""
    return next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
