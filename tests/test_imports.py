"""The import graph of ``stress/``, read from the source (function-local imports included):
no new import cycle. The cycle listed in KNOWN is older than this test and is to be
broken by the layout of issue 24; a cycle outside it, or it grown, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "stress"
KNOWN = (
    # the factor registry and its families, through the scenario loader and envs
    {"stress.envs", "stress.factors", "stress.models.resolve", "stress.scenario.inputs"}
    | {"stress.scenario.load", "stress.scenario.matrix", "stress.scenario.schema"}
    | {f"stress.factors.{name}" for name in ("api", "convert", "input_lifetime", "input_path")}
    | {f"stress.factors.{name}" for name in ("inputs_written", "lifecycle", "limits")}
    | {f"stress.factors.{name}" for name in ("memcheck", "misuse", "mnn_knobs", "perturb")}
    | {f"stress.factors.{name}" for name in ("output_lifetime", "pressure", "threads")}
    | {"stress.factors.version"},
)


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """The stress modules ``name`` imports, each with the line of its first import."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
            module = _owner(target, known)
            if module is not None and module != name:
                found.setdefault(module, node.lineno)
            if isinstance(node, ast.ImportFrom) and module == target:
                break  # `from a import b` where a.b is a module: the edge is to a.b only
    return found


def _owner(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target if target.startswith("stress") else None


def cycles(graph: dict[str, dict[str, int]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_no_import_cycle_beyond_the_known_ones():
    known = modules()
    graph = {name: imports(name, path, known) for name, path in known.items()}
    for component in cycles(graph):
        if not any(component <= old for old in KNOWN):
            edges = [
                f"{known[a].relative_to(REPO)}:{graph[a][b]} imports {b}"
                for a in sorted(component)
                for b in graph[a]
                if b in component
            ]
            raise AssertionError("a new import cycle:\n  " + "\n  ".join(edges))


def test_the_cycle_finder_finds_a_cycle_and_names_its_lines():
    graph = {"a": {"b": 3}, "b": {"c": 5}, "c": {"a": 7}, "d": {"a": 1}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b": 1}, "b": {}}) == []
