"""What the commands share beyond their statuses (``stress.cli.base``): the consoles they
print on, and the scenario files their arguments name. Imported by ``stress.cli.main`` and by the
modules whose commands it registers (``cli.run``, ``cli.versions``), never the other way."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from stress.cli.base import Console, SideConsole, reopen_closed_streams
from stress.errors import StressError

reopen_closed_streams()
# a terminal: its own width; a file or a pipe: tables laid out for 150 columns, prose
# unwrapped and no line padded (``analysis.table.print_lines``)
_TERMINAL = sys.stdout.isatty()
console = Console(width=None if _TERMINAL else 150, soft_wrap=not _TERMINAL)
errors = SideConsole(stderr=True)


def scenario_files(paths: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    if not files:
        raise StressError("no scenario files given", fix="pass .yaml files or a folder of them")
    return files


def command(*words: object) -> str:
    """A command line the user can paste: ``mnn-stress`` as they called it (``run.sh`` says
    how, in ``MNN_STRESS_PROG``), each word quoted where the shell needs it."""
    prog = os.environ.get("MNN_STRESS_PROG", "mnn-stress")
    return " ".join([prog, *(shlex.quote(str(word)) for word in words)])
