"""RUN_DIR/journal.jsonl: every variant state change and progress, appended as it happens.

One JSON line per change makes a state change cost O(1) whatever the matrix size (rewriting
the manifest each time did not). The manifest is written at the start and the end; readers
fold the journal over it, so a run whose coordinator was killed still says where each variant
stood. A torn last line (killed mid-write) is ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from stress.errors import StorageError

JOURNAL_NAME = "journal.jsonl"


class Journal:
    """Appends lines; a line that cannot be written (full disk) is kept and written by
    ``retry`` once room is made."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / JOURNAL_NAME
        self.unwritten: list[bytes] = []
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise StorageError.of(exc, self.path) from exc

    def variant(self, variant_id: str, entry: dict[str, Any]) -> None:
        self._append({"ts": time.time(), "variant": variant_id, **entry})

    def run(self, status: str, reason: str | None) -> None:
        self._append({"ts": time.time(), "run": status, "reason": reason})

    def _append(self, line: dict[str, Any]) -> None:
        self.unwritten.append(json.dumps(line, default=str).encode() + b"\n")
        self.retry()

    def retry(self) -> None:
        """Write every line not yet on disk, in order; StorageError if the disk refuses."""
        while self.unwritten:
            data = self.unwritten[0]
            try:
                written = os.write(self._fd, data)
            except OSError as exc:
                raise StorageError.of(exc, self.path) from exc
            if written < len(data):  # a partial line: end it so the next one parses
                self.unwritten[0] = data[written:]
                continue
            self.unwritten.pop(0)

    def close(self) -> None:
        os.close(self._fd)


def read_journal(run_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The latest fields of each variant (without the line's ``ts`` and ``variant``), and the
    last run-level line (None if none)."""
    variants: dict[str, dict[str, Any]] = {}
    run: dict[str, Any] | None = None
    try:
        lines = (run_dir / JOURNAL_NAME).read_bytes().splitlines()
    except FileNotFoundError:
        return variants, run
    for raw in lines:
        try:
            line = json.loads(raw)
        except ValueError:  # torn by a kill mid-write
            continue
        if not isinstance(line, dict):
            continue
        if "variant" in line:
            variant_id = line.pop("variant")
            line.pop("ts", None)
            variants[variant_id] = {**variants.get(variant_id, {}), **line}
        elif "run" in line:
            run = line
    return variants, run
