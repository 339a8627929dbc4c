"""A model file as the run found it when it loaded the scenario: a worker started after the
file changed (rewritten, replaced, deleted) would run another model under the same variants
and mix two models' rows, so the coordinator stops the run instead. One ``stat`` per worker
start; the content digest is the resume's check (``stress.models.source``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileState:
    size: int
    mtime_ns: int
    inode: int
    device: int

    @classmethod
    def of(cls, path: str | Path) -> FileState | None:
        """The file as it is now; None when it cannot be read."""
        try:
            found = os.stat(path)
        except OSError:
            return None
        return cls(found.st_size, found.st_mtime_ns, found.st_ino, found.st_dev)


def change(path: str | Path, then: FileState | None) -> str | None:
    """How the file at ``path`` differs from ``then`` (None: it does not)."""
    now = FileState.of(path)
    if now == then:
        return None
    if now is None:
        return "was deleted or cannot be read any more"
    if then is None or (now.inode, now.device) != (then.inode, then.device):
        return "was replaced by another file"
    return f"was rewritten ({then.size:,} bytes then, {now.size:,} bytes now)"
