"""A model file as the run found it when it loaded the scenario: a worker started after the
file's content changed (rewritten, replaced, deleted) would run another model under the same
variants and mix two models' rows, so the coordinator stops the run instead. One ``stat`` per
worker start; the file is hashed again only when that changed (``touch``, or another run's
cache rebuilding a built-in model the same, changes nothing)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stress.models.files import sha256_of


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    ctime_ns: int  # moves on any write, even one that puts the mtime back
    inode: int
    device: int

    @classmethod
    def of(cls, path: str | Path) -> FileState | None:
        """The file as it is now; None when it cannot be read."""
        try:
            found = os.stat(path)
        except OSError:
            return None
        return cls(found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, found.st_dev)


@dataclass(frozen=True)
class LoadedFile:
    """A model file as the run loaded it: where it was on disk, and its content."""

    state: FileState | None
    sha256: str | None

    @classmethod
    def of(cls, path: str | Path) -> LoadedFile:
        state = FileState.of(path)
        return cls(state, _digest(path) if state is not None else None)


def change(path: str | Path, then: LoadedFile) -> str | None:
    """How the content of the file at ``path`` differs from ``then`` (None: it does not)."""
    now = FileState.of(path)
    if now == then.state:
        return None
    digest = _digest(path) if now is not None else None
    if digest is None:
        return "was deleted or cannot be read any more"
    if digest == then.sha256:
        return None
    if then.state is None or (now.inode, now.device) != (then.state.inode, then.state.device):
        return "was replaced by another file"
    return f"was rewritten ({then.state.size:,} bytes then, {now.size:,} bytes now)"


def _digest(path: str | Path) -> str | None:
    try:
        return sha256_of(Path(path))
    except OSError:
        return None
