"""RUN_DIR/journal.jsonl: every variant state change and progress, appended as it happens.

One JSON line per change makes a state change cost O(1) whatever the matrix size (rewriting
the manifest each time did not). The manifest is written at the start and the end; readers
fold the journal over it, so a run whose coordinator was killed still says where each variant
stood. A torn last line (killed mid-write) is ignored; any other line that cannot be read
(garbage, zeroed pages after a machine crash) is skipped and counted (``JournalRead``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stress.errors import StorageError
from stress.records.rundir import RunLayout


class Journal:
    """Appends lines; a line that cannot be written (full disk) is kept and written by
    ``retry`` once room is made."""

    def __init__(self, run_dir: Path) -> None:
        self.path = RunLayout(run_dir).journal
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


@dataclass
class JournalRead:
    """What the journal says: the latest fields of each variant (without the line's ``ts`` and
    ``variant``), the last run-level line (None if none), and the lines that could not be
    read (1-based; a torn last line is not one of them)."""

    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    run: dict[str, Any] | None = None
    unreadable: list[int] = field(default_factory=list)
    error: str | None = None  # the file itself could not be read

    def problem(self) -> str | None:
        """What a reader should be told, in one sentence (None: nothing)."""
        if self.error is not None:
            return f"{RunLayout.JOURNAL} cannot be read ({self.error})"
        if not self.unreadable:
            return None
        shown = ", ".join(map(str, self.unreadable[:10])) + (
            ", ..." if len(self.unreadable) > 10 else ""
        )
        return f"{RunLayout.JOURNAL}: {len(self.unreadable)} line(s) cannot be read (line {shown})"


def read_journal(
    run_dir: Path,
    variant_ok: Callable[[dict[str, Any]], bool],
    run_ok: Callable[[dict[str, Any]], bool],
) -> JournalRead:
    """Every line that parses and that ``variant_ok`` (a variant's line, without ``ts`` and
    ``variant``) or ``run_ok`` (a run-level line) accepts, folded in order."""
    found = JournalRead()
    try:
        data = RunLayout(run_dir).journal.read_bytes()
    except FileNotFoundError:
        return found
    except OSError as exc:
        found.error = exc.strerror or str(exc)
        return found
    lines = data.splitlines()
    for number, raw in enumerate(lines, 1):
        if not _fold(found, raw, variant_ok, run_ok):
            torn = number == len(lines) and not data.endswith(b"\n")  # killed mid-write
            if raw.strip() and not torn:
                found.unreadable.append(number)
    return found


def _fold(
    found: JournalRead,
    raw: bytes,
    variant_ok: Callable[[dict[str, Any]], bool],
    run_ok: Callable[[dict[str, Any]], bool],
) -> bool:
    try:
        line = json.loads(raw)
    except ValueError:
        return False
    if not isinstance(line, dict):
        return False
    if isinstance(line.get("variant"), str):
        variant_id = line.pop("variant")
        line.pop("ts", None)
        if not variant_ok(line):
            return False
        found.variants[variant_id] = {**found.variants.get(variant_id, {}), **line}
        return True
    if "run" in line and run_ok(line):
        found.run = line
        return True
    return False
