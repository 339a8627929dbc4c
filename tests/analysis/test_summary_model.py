"""The summary defined once (``stress.analysis.summary_model``): ``--json`` is the models'
dump and conforms to the JSON Schema ``schema --summary`` prints; a value a builder adds
without a field in the models fails the summary; the dump keeps the JSON as it always was."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from stress.analysis import summary as summary_module
from stress.analysis.grading import GRADES
from stress.analysis.summary import summarize
from stress.analysis.summary_model import (
    EventCounts,
    GradeCounts,
    Rates,
    RunSummary,
    VariantSummary,
)
from stress.records.events import EventKind
from tests.conftest import run_cli

SCENARIO = "name: typed\nmodel: tiny\niterations: 60\nmatrix:\n  api: [session, module]\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real run with a mismatch (module API), a crash (session API, iteration 5) and
    enough iterations for a drift fit."""
    directory = tmp_path_factory.mktemp("typed")
    scenario = directory / "typed.yaml"
    scenario.write_text(SCENARIO)
    out = directory / "run"
    fault = "perturb@0+?api=module,segv@5?api=session"
    run_cli("run", str(scenario), "--out", str(out), "--workers", "2", fault=fault)
    return out


def conforms(value: Any, schema: dict, defs: dict, where: str = "$") -> list[str]:
    """Where ``value`` breaks ``schema``, for the part of JSON Schema pydantic writes: $ref,
    anyOf, enum, const, type, properties, required, additionalProperties, items,
    prefixItems."""
    if "$ref" in schema:
        return conforms(value, defs[schema["$ref"].rpartition("/")[2]], defs, where)
    if "anyOf" in schema:
        tried = [conforms(value, option, defs, where) for option in schema["anyOf"]]
        return [] if any(not errors for errors in tried) else [e for t in tried for e in t]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    kind = schema.get("type")
    if kind is not None and not _is(value, kind):
        return [f"{where}: {value!r} is not {kind}"]
    if kind == "object":
        return _object(value, schema, defs, where)
    if kind == "array":
        items = list(zip(value, schema.get("prefixItems", [])))
        items += [(v, schema["items"]) for v in value[len(items) :] if "items" in schema]
        return [e for i, (v, s) in enumerate(items) for e in conforms(v, s, defs, f"{where}[{i}]")]
    return []


def _object(value: dict, schema: dict, defs: dict, where: str) -> list[str]:
    properties = schema.get("properties", {})
    errors = [f"{where}: no {key}" for key in schema.get("required", []) if key not in value]
    for key, item in value.items():
        inner = properties.get(key, schema.get("additionalProperties", True))
        if inner is False:
            errors.append(f"{where}: {key} is not in the schema")
        elif isinstance(inner, dict):
            errors += conforms(item, inner, defs, f"{where}.{key}")
    return errors


def _is(value: Any, kind: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": number,
        "boolean": isinstance(value, bool),
        "null": value is None,
    }[kind]


@pytest.mark.integration
def test_the_json_conforms_to_the_printed_schema_and_reads_back_as_it_was(run_dir):
    schema = json.loads(run_cli("schema", "--summary").stdout)
    text = run_cli("summary", str(run_dir), "--json").stdout
    found = json.loads(text)
    assert conforms(found, schema, schema["$defs"]) == []
    assert {v["verdict"] for v in found["variants"]} == {"CRASHED", "MISMATCH"}
    assert found["crash_signatures"] and found["attribution"]  # the free-form parts too
    assert RunSummary.model_validate_json(text).to_json() + "\n" == text
    assert run_cli("report", str(run_dir), "--json", check=False).stdout == text


@pytest.mark.integration
def test_the_schema_rejects_what_the_json_never_holds(run_dir):
    """The check above can fail: a key, a type or a verdict the models do not define."""
    schema = json.loads(run_cli("schema", "--summary").stdout)
    found = json.loads(summarize(run_dir).to_json())
    variant = found["variants"][0]
    variant["bogus"] = 1
    variant["iterations"] = "20"
    variant["verdict"] = "FINE"
    del variant["rates"]
    errors = conforms(found, schema, schema["$defs"])
    assert len(errors) == 4, errors


def _added(found: dict) -> dict:
    return found | {"not_documented": 1}


def _added_to_each(found: dict | list) -> dict | list:
    if isinstance(found, list):
        return [_added(item) for item in found]
    return {key: _added(value) for key, value in found.items()}


# Builders of the summary (as ``summarize`` calls them), and how a new key reaches the result.
BUILDERS = {
    "_empty": _added,  # a variant's counts
    "variant_rates": _added,  # a variant's rates
    "drift": _added_to_each,  # per variant
    "signatures": _added_to_each,  # per signature
    "_add_grades": _added_to_each,  # per scenario's reference
}


@pytest.mark.integration
@pytest.mark.parametrize("builder", list(BUILDERS))
def test_a_value_a_builder_adds_without_a_field_fails_the_summary(run_dir, monkeypatch, builder):
    original = getattr(summary_module, builder)

    def more(*args, **kwargs):
        return BUILDERS[builder](original(*args, **kwargs))

    monkeypatch.setattr(summary_module, builder, more)
    with pytest.raises(ValidationError, match="not_documented"):
        summarize(run_dir)


@pytest.mark.integration
def test_the_models_dump_what_the_builders_made(run_dir, monkeypatch):
    """Nothing changes on its way through the models: no int made a float, no key dropped
    or moved. The dump is what ``json.dumps`` of the builders' values printed before."""
    made: dict[str, Any] = {"variants": []}

    def variant(values: dict) -> VariantSummary:
        made["variants"].append(json.dumps(values, indent=2))
        return VariantSummary.model_validate(values)

    def run(**values) -> RunSummary:
        made["run"] = json.dumps(values, indent=2, default=lambda m: m.model_dump(by_alias=True))
        return RunSummary(**values)

    monkeypatch.setattr(summary_module, "VariantSummary", SimpleNamespace(model_validate=variant))
    monkeypatch.setattr(summary_module, "RunSummary", run)
    summary = summarize(run_dir)
    dumped = [json.dumps(v.model_dump(by_alias=True), indent=2) for v in summary.variants]
    assert made["variants"] == dumped
    assert made["run"] == summary.to_json()


def test_schema_summary_names_the_fields_and_schema_alone_the_scenario():
    done = run_cli("schema", "--summary")
    schema = json.loads(done.stdout)
    assert done.returncode == 0 and schema["title"] == "RunSummary"
    assert list(schema["properties"]) == list(RunSummary.model_fields)
    variant = schema["$defs"]["VariantSummary"]
    assert list(variant["properties"]) == list(VariantSummary.model_fields)
    assert "milliseconds" in variant["properties"]["latency_p50_ms"]["description"]
    assert "with" in schema["$defs"]["FactorScore"]["properties"]  # the JSON's key, not with_
    scenario = json.loads(run_cli("schema").stdout)
    assert "RunSummary" not in json.dumps(scenario) and "matrix" in scenario["properties"]


def test_the_counts_by_name_follow_the_grades_and_the_event_kinds():
    assert tuple(GradeCounts.model_fields) == GRADES
    assert tuple(Rates.model_fields) == (*GRADES, "death")
    assert tuple(EventCounts.model_fields) == tuple(kind.value for kind in EventKind)


@pytest.mark.integration
def test_values_this_run_lacks_are_printed_as_the_plain_json_was(run_dir):
    """Infinity, a pause, an ONNX Runtime output that could not be compared, a mismatch
    graded by statistics: dumped from the models, byte for byte what ``json.dumps`` of the
    builders' values printed before the models."""
    found = json.loads(summarize(run_dir).to_json())
    found["pauses"] = [{"at": "2026-01-01T00:00:00.000+00:00", "seconds": 2.5}]
    (reference,) = found["references"].values()
    reference["onnxruntime"] = {
        "status": "done",
        "outputs": {"y": {"grade": "missing", "detail": "ONNX Runtime has no output of this name"}},
    }
    worst = next(v["mismatch"] for v in found["variants"] if v["mismatch"])
    worst |= {"max_rel": float("inf"), "basis": "statistics", "mean_abs": None}
    plain = json.dumps(found, indent=2)
    assert "Infinity" in plain
    assert RunSummary.model_validate(found).to_json() == plain


def test_a_signatures_factor_values_read_as_a_scenario_writes_them_in_summary_and_html():
    """``off``, never Python's None, and the defaults left out: one rule for both pages."""
    from stress.analysis.signatures import varied
    from stress.analysis.summary_model import Signature
    from stress.records.events import EventKind

    group = Signature(
        kind=EventKind.CRASH,
        cause="SIGSEGV",
        frames=[],
        native_frames=[],
        count=2,
        first="2026-12-07T00:00:00Z",
        last="2026-12-07T00:00:01Z",
        variants=["va", "vb"],
        factors={"rlimit_as_headroom_mib": [None, 64], "threads": [1], "api": ["module"]},
    )
    assert varied(group) == "rlimit_as_headroom_mib=off|64 api=module"


def test_a_signature_line_shows_its_native_frames_as_they_are():
    """``[native: ...]`` is text: printed without markup, never escaped with a backslash."""
    import io

    from rich.console import Console

    from stress.analysis.summary_model import Signature
    from stress.analysis.table import print_signatures
    from stress.records.events import EventKind

    group = Signature(
        kind=EventKind.CRASH,
        cause="SIGSEGV",
        frames=["drivers/session.py:run"],
        native_frames=["libMNN.so:onExecute", "libMNN.so:runSession"],
        count=1,
        first="2026-12-07T00:00:00Z",
        last="2026-12-07T00:00:00Z",
        variants=["va"],
        factors={"api": ["session"]},
    )
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_signatures([group], console)
    said = console.file.getvalue()
    assert "[native: libMNN.so:onExecute" in said and "\\[" not in said
