"""Scenario YAML as written: parsed with ruamel's round-trip loader so that every key keeps
its line number, for error messages that point at the line to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from stress.errors import ScenarioError


def read_yaml(path: Path) -> tuple[str, Any]:
    """The file's text and its top-level mapping; ScenarioError when it is not one."""
    if not path.is_file():
        raise ScenarioError(
            "no such scenario file",
            file=str(path),
            fix="check the path; `ls scenarios/` lists the bundled ones",
        )
    text = path.read_text()
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ScenarioError(
            f"not valid YAML: {exc.problem or exc.context}",
            file=str(path),
            line=mark.line + 1 if mark else None,
            fix="fix the YAML syntax at that line",
        ) from exc
    if not isinstance(data, dict):
        raise ScenarioError(
            "a scenario must be a mapping of keys (name, model, matrix, ...)",
            file=str(path),
            fix="see scenarios/control.yaml for an example",
        )
    return text, data


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


def plain(node: Any) -> Any:
    """ruamel's round-trip types as plain Python values, for strict validation."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (int, float, str):
        if isinstance(node, kind):
            return kind(node)
    return node
