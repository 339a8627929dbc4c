"""The documentation stays true to the code: generated pages current, the site builds strictly,
and the README's links lead somewhere."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[1]


def _generator():
    """docs/generate.py as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("docs_generate", REPO / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _generator()


def test_every_schema_field_and_event_kind_is_described():
    assert generate.description_problems() == []


def test_the_generated_pages_are_current():
    stale = generate.stale_pages()
    assert not stale, f"stale: {stale}; run python docs/generate.py"


def test_a_changed_factor_makes_its_page_stale(monkeypatch):
    """The check sees a change of the registry the page was generated from."""
    registry = dict(generate.REGISTRY)
    registry["api"] = dataclasses.replace(registry["api"], doc="changed on purpose")
    monkeypatch.setattr(generate, "REGISTRY", registry)
    assert generate.stale_pages() == ["reference/factors.md"]


def test_a_new_schema_field_without_a_description_fails(monkeypatch):
    schema = generate.ITERATION_SCHEMA.append(pa.field("added_on_purpose", pa.int64()))
    monkeypatch.setattr(generate, "ITERATION_SCHEMA", schema)
    problems = generate.description_problems()
    assert problems == [
        "iterations field 'added_on_purpose' has no description in docs/generate.py"
    ]
    with pytest.raises(ValueError, match="added_on_purpose"):
        generate.schema_page()


def test_a_description_of_a_field_that_is_gone_fails(monkeypatch):
    schema = generate.EVENT_SCHEMA.remove(generate.EVENT_SCHEMA.get_field_index("stderr_tail"))
    monkeypatch.setattr(generate, "EVENT_SCHEMA", schema)
    assert generate.description_problems() == [
        "docs/generate.py describes events field 'stderr_tail', not in it"
    ]


def test_check_names_a_stale_page_and_exits_1(tmp_path, monkeypatch, capsys):
    for name in generate.PAGES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(generate.PAGES[name]())
    (tmp_path / "reference" / "schema.md").write_text("old\n")
    monkeypatch.setattr(generate, "DOCS", tmp_path)
    assert generate.main(["--check"]) == 1
    assert "docs/reference/schema.md" in capsys.readouterr().err
    assert generate.main([]) == 0  # rewrites it
    assert generate.main(["--check"]) == 0


@pytest.mark.mkdocs
def test_the_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link or anchor, a page outside the navigation, or a
    missing snippet fails. Needs mkdocs and mkdocs-material (the test extra)."""
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "factors" / "index.html").is_file()


_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def test_every_relative_link_in_the_readme_exists():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code blocks are not links
    targets = [t for t in _LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]
    assert targets, "the README links to no file: the pattern is wrong"
    missing = [t for t in targets if not (REPO / t.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.mark.integration
@pytest.mark.parametrize("model", ["tiny", "three_input"])  # three_input: no values stored
def test_the_queries_in_the_docs_run_against_a_real_run(tmp_path, model, monkeypatch):
    """Every SQL and Python block of the analysis page, pasted as it is with the run's path
    for ``results/<run-id>``: one run with a death (events) and one where nobody died
    (``events/`` holds only its schema)."""
    import duckdb

    from tests.conftest import run_cli

    scenario = tmp_path / "docs.yaml"
    scenario.write_text(f"name: docs\nmodel: {model}\niterations: 12\n")
    out = tmp_path / "run"
    fault = "segv@6" if model == "tiny" else None
    run_cli("run", str(scenario), "--out", str(out), fault=fault, check=False)
    text = (REPO / "docs" / "analysis.md").read_text().replace("results/<run-id>", str(out))
    (sql,) = _blocks(text, "sql")
    statements = [s for s in sql.split(";") if "SELECT" in s]
    assert len(statements) == 4
    answers = [duckdb.sql(statement).fetchall() for statement in statements]
    assert answers[-1] or model == "three_input"  # the death, where there was one
    monkeypatch.chdir(REPO)
    for block in _blocks(text, "python"):
        exec(compile(block, "docs/analysis.md", "exec"), {})


def _scenario_blocks() -> list[tuple[str, str]]:
    """Each YAML block of the README and the docs as a scenario file: a fragment (no
    ``name:``) gets a name and the tiny model."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for index, block in enumerate(_blocks(page.read_text(), "yaml")):
            whole = re.search(r"^name:", block, flags=re.M)
            text = block if whole else f"name: fragment\nmodel: tiny\n{block}"
            found.append((f"{page.relative_to(REPO)}#{index + 1}", text))
    return found


@pytest.mark.parametrize(("where", "text"), _scenario_blocks(), ids=lambda x: x.split("\n")[0])
def test_the_scenarios_in_the_docs_are_valid(tmp_path, where, text):
    """What a user pastes from the docs validates: against the schema, and, but for other MNN
    releases (their environments are made by ``envs prepare``), against the model too."""
    from stress.scenario import load_scenario
    from stress.scenario.load import read_spec

    path = tmp_path / "pasted.yaml"
    path.write_text(text)
    spec = read_spec(path)
    if spec.matrix.mnn_version == ["installed"]:
        load_scenario(path)


def test_there_are_scenarios_in_the_docs_to_check():
    pages = {where.split("#")[0] for where, _ in _scenario_blocks()}
    assert {"README.md", "docs/scenarios.md", "docs/versions.md"} <= pages
