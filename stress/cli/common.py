"""What the commands share beyond their statuses (``stress.cli.base``): the consoles they
print on, and the scenario files their arguments name. Imported by ``stress.cli.main`` and by the
modules whose commands it registers (``cli.run``, ``cli.versions``), never the other way."""

from __future__ import annotations

import sys
from pathlib import Path

from stress.cli.base import Console, SideConsole, reopen_closed_streams
from stress.errors import StressError

reopen_closed_streams()
console = Console(width=None if sys.stdout.isatty() else 150)
errors = SideConsole(stderr=True)


def scenario_files(paths: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    if not files:
        raise StressError("no scenario files given", fix="pass .yaml files or a folder of them")
    return files
