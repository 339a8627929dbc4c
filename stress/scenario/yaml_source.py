"""Scenario YAML as written: parsed with ruamel's round-trip loader so that every key keeps
its line number, for error messages that point at the line to fix.

Scenario files are untrusted input: the file's size and lines, the nesting, the number of values
and what aliases expand to are bounded, so that no file takes more than a second or two to load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    CollectionEndEvent,
    CollectionStartEvent,
    Event,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError

from stress.errors import ScenarioError

MAX_SCENARIO_BYTES = 1 << 20  # real ones are ~1 KB; the text is also copied into the manifest
MAX_LINES = 10_000  # ruamel spends ~40 us on every line, even a comment: 1 MiB of them, 20 s
MAX_NESTING = 32  # collections within collections; a scenario needs 4 (inputs.x.shape[0])
MAX_VALUES = 10_000  # keys and values, also after alias expansion; a scenario has ~50
# CPython's int() refuses more than 4300 digits (640 at the lowest setting), inside ruamel;
# shorter numbers reach validation, which names the key. No scenario value needs 20 digits.
_HUGE_INTEGER = re.compile(r"[-+]?[0-9_]{600,}")


def read_yaml(path: Path, text: str | None = None) -> tuple[str, Any]:
    """The file's text (or ``text``, as if read from ``path``) and its top-level mapping;
    ScenarioError when it is not one."""
    text = _read_text(path) if text is None else text
    data = _parse(path, text)
    if not isinstance(data, dict):
        raise ScenarioError(
            "a scenario must be a mapping of keys (name, model, matrix, ...)",
            file=str(path),
            fix="see scenarios/control.yaml for an example",
        )
    return text, data


def _read_text(path: Path) -> str:
    """The file as strict UTF-8 text, never reading more than MAX_SCENARIO_BYTES + 1 bytes, and
    refused beyond MAX_LINES."""
    if not path.is_file():
        what = "not a regular file (a device, a FIFO, ...)" if path.exists() else None
        raise ScenarioError(
            what or "no such scenario file",
            file=str(path),
            fix="check the path; `ls scenarios/` lists the bundled ones",
        )
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_SCENARIO_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(
            f"cannot read the file: {exc.strerror or exc}",
            file=str(path),
            fix="check its permissions",
        ) from exc
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(
            f"the file has {path.stat().st_size:,} bytes, more than the limit of "
            f"{MAX_SCENARIO_BYTES:,} for a scenario file",
            file=str(path),
            fix="a scenario is a few hundred bytes of settings; check that this is the right file",
        )
    text = _decoded(path, raw)
    lines = len(text.splitlines())  # every kind of line break YAML knows, and a few more
    if lines > MAX_LINES:
        raise ScenarioError(
            f"the file has {lines:,} lines, more than the limit of {MAX_LINES:,} for a scenario",
            file=str(path),
            fix="a scenario is a few dozen lines; check that this is the right file",
        )
    return text


def _decoded(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        raise ScenarioError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column "
            f"{exc.start - line_start + 1} cannot be decoded",
            file=str(path),
            line=raw.count(b"\n", 0, exc.start) + 1,
            fix="save the file as UTF-8",
        ) from exc


def _parse(path: Path, text: str) -> Any:
    """Parse twice: the event stream first, which is cheap and not recursive, so that a document
    too deep or too large for ruamel's recursive composer is refused before it is built."""
    try:
        _check_events(path, YAML(typ="rt").parse(text))
        return YAML(typ="rt").load(text)
    except ScenarioError:
        raise
    except Exception as exc:
        # Whatever the parser raises on untrusted text (ValueError for a bad date, TypeError for
        # a list used as a key, ...) is the file's fault, to be reported as such.
        raise ScenarioError(
            f"not valid YAML: {_problem(exc)}",
            file=str(path),
            line=_error_line(exc, text),
            fix="fix the YAML at that point; quote text that YAML would read as a date or number",
        ) from exc


def _problem(exc: Exception) -> str:
    if isinstance(exc, MarkedYAMLError):
        return str(exc.problem or exc.context)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _error_line(exc: Exception, text: str) -> int | None:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        return mark.line + 1 if mark else None
    if isinstance(exc, ReaderError):
        return text.count("\n", 0, exc.position) + 1
    return None


def _check_events(path: Path, events: Iterable[Event]) -> None:
    """Refuse, at its line, the first event that nests too deep, exceeds the number of values
    or is an integer too long to convert."""
    depth = values = 0
    for event in events:
        depth += isinstance(event, CollectionStartEvent) - isinstance(event, CollectionEndEvent)
        values += isinstance(event, NodeEvent)
        problem = _excess(event, depth, values)
        if problem:
            message, fix = problem
            raise ScenarioError(message, file=str(path), line=event.start_mark.line + 1, fix=fix)


def _excess(event: Event, depth: int, values: int) -> tuple[str, str] | None:
    if depth > MAX_NESTING:
        return (
            f"nested more than {MAX_NESTING} levels deep",
            "a scenario needs 4 levels (inputs.x.shape[0]); check the brackets and indentation",
        )
    if values > MAX_VALUES:
        return (
            f"more than {MAX_VALUES:,} keys and values",
            "a scenario has tens of values; check that this is the right file",
        )
    if (
        isinstance(event, ScalarEvent)
        and event.style is None
        and _HUGE_INTEGER.fullmatch(event.value)
    ):
        return f"a number of {len(event.value):,} digits", "no value in a scenario needs 20 digits"
    return None


def key_path(loc: tuple[Any, ...]) -> str:
    """A pydantic error location as a dotted key path: ``matrix.num_thread[1]``."""
    parts = [
        f"[{p}]" if isinstance(p, int) else f".{p}"
        for p in loc
        if not str(p).startswith(("function-", "list["))
    ]
    return "".join(parts).lstrip(".")


def line_of(data: Any, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest key of ``loc`` present in the YAML."""
    line = None
    node = data
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def plain(node: Any, file: str | None = None) -> Any:
    """ruamel's round-trip types as plain Python values, for strict validation. Aliases are
    expanded here, so values are counted: a few lines of aliases of aliases can stand for
    billions of values ("billion laughs")."""
    return _Expansion(file).plain(node, depth=0)


@dataclass
class _Expansion:
    """One conversion to plain values, with its running count against MAX_VALUES."""

    file: str | None
    values: int = 0

    def plain(self, node: Any, depth: int) -> Any:
        if isinstance(node, dict | list):
            depth += 1
        self._count(depth)
        if isinstance(node, dict):
            return {str(k): self.plain(v, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [self.plain(v, depth) for v in node]
        if isinstance(node, bool) or node is None:
            return node
        for kind in (int, float, str):
            if isinstance(node, kind):
                return kind(node)
        return node

    def _count(self, depth: int) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            problem = f"aliases (*name) expand to more than {MAX_VALUES:,} values"
        elif depth > MAX_NESTING:
            problem = f"aliases (*name) nest values more than {MAX_NESTING} levels deep"
        else:
            return
        raise ScenarioError(
            problem,
            file=self.file,
            fix="use an alias for a small shared part, not to repeat aliases",
        )


def error_at(
    path: Path, data: CommentedMap, loc: tuple[Any, ...], message: str, *, fix: str
) -> ScenarioError:
    """A ScenarioError at ``loc`` of the file: its key path and line."""
    return ScenarioError(
        message, file=str(path), key=key_path(loc), line=line_of(data, loc), fix=fix
    )
