"""valgrind memcheck's XML report of one worker, as errors with their native stacks.

Read after the worker ended, however it ended: a worker killed mid-run leaves the XML
unfinished, and every error written before that is still read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

MAX_FRAMES = 40
MAX_ERRORS = 200  # distinct errors kept per worker; the count of the rest is reported


@dataclass(frozen=True)
class MemcheckError:
    """One distinct error: its kind (InvalidRead, InvalidFree, UninitCondition, ...), what
    valgrind says, how often it occurred, and its stacks (where, and where the block was
    allocated or freed) as text."""

    kind: str
    what: str
    count: int
    stack: str


def _frame(frame: ElementTree.Element) -> str:
    fn = frame.findtext("fn") or frame.findtext("ip") or "?"
    file, line = frame.findtext("file"), frame.findtext("line")
    where = f"{file}:{line}" if file else (frame.findtext("obj") or "?")
    return f"  {fn} ({where})"


def _stack_text(error: ElementTree.Element) -> str:
    """The error's stacks, each under what valgrind says about it (``auxwhat``)."""
    lines: list[str] = []
    for child in error:
        if child.tag == "what":
            lines.append(child.text or "")
        elif child.tag == "auxwhat":  # a blank line before: the first stack is the error's
            lines.extend(["", child.text or ""])
        elif child.tag == "xwhat":
            lines.append(child.findtext("text") or "")
        elif child.tag == "stack":
            lines.extend(_frame(f) for f in child.findall("frame")[:MAX_FRAMES])
    return "\n".join(lines)


def _is_leak(error: ElementTree.Element) -> bool:
    """valgrind's XML mode reports leaks at exit even with --leak-check=no; leaks are measured
    as resident-memory growth instead (``stress.analysis.drift``)."""
    return (error.findtext("kind") or "").startswith("Leak_")


def read_errors(path: Path) -> tuple[list[MemcheckError], int]:
    """The distinct errors in the report (at most MAX_ERRORS) and how many more there were.
    A missing report has none; an unfinished one has those written before it stopped."""
    found: dict[str, ElementTree.Element] = {}
    counts: dict[str, int] = {}
    try:
        for _, element in ElementTree.iterparse(path, events=("end",)):
            if element.tag == "error" and not _is_leak(element):
                found[element.findtext("unique") or str(len(found))] = element
            elif element.tag == "pair":
                counts[element.findtext("unique") or ""] = int(element.findtext("count") or 1)
    except (OSError, ElementTree.ParseError):
        pass
    errors = [
        MemcheckError(
            kind=e.findtext("kind") or "?",
            what=e.findtext("what") or e.findtext("xwhat/text") or "",
            count=counts.get(unique, 1),
            stack=_stack_text(e),
        )
        for unique, e in found.items()
    ]
    return errors[:MAX_ERRORS], max(0, len(errors) - MAX_ERRORS)
