"""The import graph of ``stress/``, read from the source (function-local imports included: a
lazy import is still an arrow): no import cycle at all, and the layers of the package keep to
their places. Importing ``a.b.c`` also runs ``a/b/__init__.py``, so an import is an arrow to
every package around its target that is not around the importer too."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "stress"


@dataclass(frozen=True)
class Layer:
    """Modules under ``folder`` may import ``stress.*`` only as the rule says."""

    folder: str
    may_import: tuple[str, ...] | None = None  # only these packages (and itself), when given
    never: tuple[str, ...] = ()  # never these packages
    why: str = ""


LAYERS = (
    Layer(
        "stress.worker",
        may_import=("stress.contract", "stress.factors"),
        why="the worker process runs only its own loop, the shared contract and the factors",
    ),
    Layer(
        "stress.contract",
        may_import=(),
        why="what both sides of the process boundary share depends on neither",
    ),
    Layer(
        "stress.records",
        never=("stress.coordinator", "stress.analysis", "stress.cli"),
        why="what a run leaves on disk knows nothing of who wrote it or who reads it",
    ),
    Layer(
        "stress.analysis",
        never=("stress.coordinator", "stress.cli"),
        why="reading a run never needs the machinery that ran it",
    ),
    Layer(
        "stress", never=("stress.cli",), why="the commands sit on top: nothing below imports them"
    ),
)
ENTRY_POINTS = {"stress.__main__"}  # ``python -m stress`` runs the CLI


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> dict[str, int]:
    """The stress modules ``name`` imports, each with the line of its first import: the
    target and every package around it that is not around ``name`` as well."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        for module in _targets(node, package, known):
            for arrow in [module, *_enclosing(module, name, known)]:
                if arrow != name:
                    found.setdefault(arrow, node.lineno)
    return found


def _targets(node: ast.AST, package: str, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            up = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*up, base] if base else up)
        submodules = [f"{base}.{alias.name}" for alias in node.names]
        names = [m for m in submodules if m in known] or [base]
    else:
        return []
    owners = [_owner(target, known) for target in names]
    return [owner for owner in owners if owner is not None]


def _enclosing(module: str, importer: str, known: dict[str, Path]) -> list[str]:
    """The packages whose ``__init__`` importing ``module`` runs first (not the importer's own)."""
    parts = module.split(".")
    outer = [".".join(parts[:i]) for i in range(1, len(parts))]
    return [p for p in outer if p in known and not (importer == p or importer.startswith(p + "."))]


def _owner(target: str, known: dict[str, Path]) -> str | None:
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target if target.startswith("stress") else None


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(graph: dict[str, dict[str, int]], known: dict[str, Path]) -> list[str]:
    """Every import that breaks a layer's rule, as ``file:line imports module (why)``."""
    found = []
    for name, targets in sorted(graph.items()):
        if name in ENTRY_POINTS:
            continue
        for layer in LAYERS:
            if not _inside(name, layer.folder):
                continue
            for target, line in sorted(targets.items()):
                allowed = (layer.folder, *(layer.may_import or ()))
                outside = layer.may_import is not None and not any(
                    _inside(target, p) for p in allowed
                )
                forbidden = any(_inside(target, p) and not _inside(name, p) for p in layer.never)
                if outside or forbidden:
                    where = _shown(known[name])
                    found.append(f"{where}:{line} imports {target} ({layer.why})")
    return found


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def graph_of(known: dict[str, Path]) -> dict[str, dict[str, int]]:
    return {name: imports(name, path, known) for name, path in known.items()}


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


def test_no_import_cycle():
    known = modules()
    graph = graph_of(known)
    for component in cycles(graph):
        edges = [
            f"{_shown(known[a])}:{graph[a][b]} imports {b}"
            for a in sorted(component)
            for b in graph[a]
            if b in component
        ]
        raise AssertionError("an import cycle:\n  " + "\n  ".join(edges))


def test_every_layer_imports_only_what_it_may():
    known = modules()
    broken = violations(graph_of(known), known)
    assert not broken, "imports across the layers:\n  " + "\n  ".join(broken)


def test_the_cycle_finder_finds_a_cycle_and_names_its_lines():
    graph = {"a": {"b": 3}, "b": {"c": 5}, "c": {"a": 7}, "d": {"a": 1}}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b": 1}, "b": {}}) == []


def _fake(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    known = {}
    for name, source in files.items():
        path = tmp_path / f"{name.replace('.', '_')}.py"
        path.write_text(source)
        known[name] = path
    return known


@pytest.mark.parametrize(
    ("importer", "source", "target"),
    [
        (
            "stress.records.parts",
            "def f():\n    from stress.coordinator.loop import X\n",
            "stress.coordinator.loop",
        ),
        (
            "stress.analysis.report",
            "import stress.coordinator.runner\n",
            "stress.coordinator.runner",
        ),
        ("stress.worker.main", "from stress.records import schema\n", "stress.records.schema"),
        ("stress.contract.ring", "from stress.factors import REGISTRY\n", "stress.factors"),
        ("stress.coordinator.runner", "from stress.cli.base import Console\n", "stress.cli.base"),
    ],
)
def test_a_crossing_import_is_named_with_its_file_and_line(tmp_path, importer, source, target):
    names = [target, "stress.coordinator", "stress.records", "stress.cli", "stress.factors"]
    known = _fake(tmp_path, {name: "" for name in names} | {importer: "x = 1\n" + source})
    found = violations(graph_of(known), known)
    line = 3 if source.startswith("def") else 2
    assert any(
        v.startswith(f"{_shown(known[importer])}:{line} imports {target} (") for v in found
    ), found


def test_a_submodule_import_is_an_arrow_to_its_package_too(tmp_path):
    known = _fake(
        tmp_path,
        {
            "stress.models.resolve": "from stress.factors.convert import NONE\n",
            "stress.factors": "",
            "stress.factors.convert": "",
        },
    )
    arrows = imports("stress.models.resolve", known["stress.models.resolve"], known)
    assert arrows == {"stress.factors.convert": 1, "stress.factors": 1}
    inner = _fake(
        tmp_path,
        {
            "stress.factors.api": "from stress.factors.factor import Factor\n",
            "stress.factors": "",
            "stress.factors.factor": "",
        },
    )
    assert imports("stress.factors.api", inner["stress.factors.api"], inner) == {
        "stress.factors.factor": 1
    }
