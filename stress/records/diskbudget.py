"""``run --max-disk SIZE``: a run directory that never grows past its budget.

The run directory's real usage (allocated blocks, everything in it) is measured every second.
At ``VALUES_AT`` of the budget the rows stop storing output values (digests and statistics
go on); at ``STOP_AT`` the run stops as if asked to, cleanly, and gives back the space it
kept in reserve (``stress.records.rundir``), which the rows still buffered, the events and the final
manifest then use: the directory ends below its budget.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

VALUES_AT = 0.80
STOP_AT = 0.95
MIN_BUDGET = 16 << 20  # the reserve (4 MiB), the reference, a manifest and a few parts

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """Bytes from ``500M``, ``2G``, ``1.5GiB`` or a plain number of bytes (binary units)."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 500M, 2G or 1.5GiB")
    size = int(float(match[1]) * _UNITS[match[2].lower()])
    if size < MIN_BUDGET:
        raise ValueError(
            f"{text} is below the smallest usable budget, {MIN_BUDGET >> 20} MiB (a run keeps "
            "4 MiB in reserve and writes a reference, logs and a manifest)"
        )
    return size


def disk_usage(directory: Path) -> int:
    """Bytes allocated to everything under ``directory`` (files vanishing meanwhile skipped)."""
    total = 0
    stack = [directory]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
            except OSError:
                continue
    return total


class DiskStage(str, Enum):
    FULL = "full"  # everything recorded
    NO_VALUES = "no_values"  # digests and statistics only
    STOP = "stop"  # the run must stop


@dataclass
class DiskBudget:
    """The budget of one run directory and where its usage stands."""

    directory: Path
    limit: int
    release_reserve: Callable[[], None] = lambda: None  # the run directory's space kept back
    used: int = 0
    stopped: str | None = None  # why the run was stopped, once it was

    def measure(self) -> DiskStage:
        self.used = disk_usage(self.directory)
        return self.stage()

    def stage(self) -> DiskStage:
        if self.used >= STOP_AT * self.limit:
            return DiskStage.STOP
        if self.used >= VALUES_AT * self.limit:
            return DiskStage.NO_VALUES
        return DiskStage.FULL

    def room(self) -> int:
        """Bytes that may still be written before the stop threshold."""
        return max(0, int(STOP_AT * self.limit) - self.used)

    def describe(self) -> str:
        return f"{self.used / 2**20:.1f} MiB of the {self.limit / 2**20:.0f} MiB budget"
