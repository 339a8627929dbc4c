"""Scenario validation: every foreseeable mistake gives file, key, line and fix."""

from __future__ import annotations

import json

import pytest

from stress.coordinator.runner import load_all
from stress.errors import ScenarioError
from stress.scenario import json_schema, load_scenario, parse_duration
from stress.scenario.variants import expand, variant_id
from tests.conftest import REPO, run_cli

GOOD = """
    name: demo
    model: tiny
    iterations: 10
    matrix:
      api: [session, module]
      num_thread: [1, 2]
"""


def error_for(scenario_file, text: str) -> ScenarioError:
    path = scenario_file(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(path) in caught.value.render()
    return caught.value


def test_unknown_top_level_key_names_key_line_and_known_keys(scenario_file):
    error = error_for(scenario_file, GOOD + "    iteratons: 5\n")
    assert error.key == "iteratons"
    assert error.line == 7
    assert "unknown key" in error.message
    assert "iterations" in error.fix


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("inputpath", "`input_path` or `inputs_written` or `input_lifetime`"),
        ("num_threads", "`num_thread` or `threads`"),
        ("sharring", "`sharing`"),
        ("Api", "`api`"),
    ],
)
def test_a_misspelt_factor_is_named_not_listed_with_all_the_others(scenario_file, typo, meant):
    error = error_for(scenario_file, GOOD + f"      {typo}: [1]\n")
    assert error.fix == f"did you mean {meant}?"  # the nearest first, not all 26 keys


@pytest.mark.parametrize(
    "text, key, fix",
    [
        (
            "api: session\n",
            "api",
            "`api` is a factor: put it under `matrix:`, e.g. matrix: {api: [session]}",
        ),
        (
            "threads: 4\n",
            "threads",
            "`threads` is a factor: put it under `matrix:`, e.g. matrix: {threads: [1]}",
        ),
        (
            "matrix:\n  timeout: 5s\n",
            "matrix.timeout",
            "`timeout` is a scenario key, not a factor: write it at the top level, not in matrix",
        ),
    ],
)
def test_a_key_in_the_wrong_place_is_told_where_it_goes(scenario_file, text, key, fix):
    error = error_for(scenario_file, "name: demo\nmodel: tiny\n" + text)
    assert (error.key, error.fix) == (key, fix)  # not "did you mean `adaptive`?"


@pytest.mark.parametrize(
    "entry, fix",
    [
        ("num_thread: [1, four]", "write a list of whole numbers from 1 to 64; e.g. [1]"),
        ("api: [sesion]", "write a list of values from: session, module; e.g. [session]"),
        ("malloc_perturb: [300]", "write a list of whole numbers from 0 to 255; e.g. [0]"),
    ],
)
def test_a_wrong_factor_value_gets_a_fix_not_a_description(scenario_file, entry, fix):
    body = "name: values\nmodel: tiny\nmatrix:\n  " + entry + "\n"
    assert error_for(scenario_file, body).fix == fix


def test_unknown_matrix_factor(scenario_file):
    error = error_for(scenario_file, GOOD + "      thread_count: [2]\n")
    assert error.key == "matrix.thread_count"
    assert error.line == 7
    assert "num_thread" in error.fix


def test_wrong_type(scenario_file):
    error = error_for(scenario_file, GOOD.replace("iterations: 10", "iterations: ten"))
    assert error.key == "iterations"
    assert error.line == 3


def test_wrong_factor_value_type_and_range(scenario_file):
    error = error_for(scenario_file, GOOD.replace("[1, 2]", "[1, '2']"))
    assert error.key == "matrix.num_thread[1]"
    assert error.line == 6
    error = error_for(scenario_file, GOOD.replace("[1, 2]", "[0]"))
    assert "below the minimum 1" in error.message
    error = error_for(scenario_file, GOOD.replace("[session, module]", "[sessoin]"))
    assert "not one of session, module" in error.message
    assert error.key == "matrix.api"


def test_impossible_values(scenario_file):
    assert error_for(scenario_file, GOOD.replace("10", "0")).key == "iterations"
    error = error_for(scenario_file, GOOD + "    duration: 5s\n")
    assert "either iterations or duration" in error.message
    assert (error.key, error.line) == ("duration", 7)
    error = error_for(scenario_file, GOOD + "    timeout: -3\n")
    assert error.key == "timeout" and "positive" in error.message


def test_unknown_model_lists_builtins(scenario_file):
    error = error_for(scenario_file, GOOD.replace("model: tiny", "model: tinny"))
    assert error.key == "model" and error.line == 2
    assert "three_input" in error.fix


def test_missing_model_file(scenario_file):
    error = error_for(scenario_file, GOOD.replace("model: tiny", "model: nowhere/m.mnn"))
    assert "not found" in error.message and error.key == "model"


def test_input_names_must_match_the_model(scenario_file):
    error = error_for(scenario_file, GOOD + "    inputs:\n      source: {distribution: zeros}\n")
    assert error.key == "inputs.source"
    assert error.line == 8
    assert "x" in error.fix


def test_input_shape_rank_must_match(scenario_file):
    error = error_for(scenario_file, GOOD + "    inputs:\n      x: {shape: [3, 16, 16]}\n")
    assert error.key == "inputs.x.shape" and "rank 3" in error.message


def test_broken_yaml_reports_line(scenario_file):
    error = error_for(scenario_file, GOOD + "    seed: [1, 2\n")
    assert error.line is not None and error.line >= 8
    assert "YAML" in error.message


def test_duplicate_scenario_names(scenario_file):
    first, second = scenario_file(GOOD, "a.yaml"), scenario_file(GOOD, "b.yaml")
    with pytest.raises(ScenarioError, match="also used by"):
        load_all([first, second])


def test_duration_parsing():
    assert parse_duration("500ms") == 0.5
    assert parse_duration("2m") == 120
    assert parse_duration(" 3.5 s ") == 3.5
    with pytest.raises(ValueError, match="'soon' is not a duration"):
        parse_duration("soon")
    with pytest.raises(ValueError, match="3 has no unit"):
        parse_duration(3)


def test_matrix_expansion_and_stable_ids(scenario_file):
    variants = expand(load_scenario(scenario_file(GOOD)))
    assert len(variants) == 4
    assert len({v.variant_id for v in variants}) == 4
    reordered = GOOD.replace("[session, module]", "[module, session]").replace("[1, 2]", "[2, 1]")
    again = expand(load_scenario(scenario_file(reordered, "again.yaml")))
    assert {v.variant_id for v in again} == {v.variant_id for v in variants}
    # Pinned: a change here breaks matching variants across runs made by older versions.
    assert variant_id(
        "demo", {"api": "module", "num_thread": 2, "precision": "normal"}
    ) == variant_id("demo", {"api": "module", "num_thread": 2})
    assert variant_id("demo", {"api": "session", "num_thread": 1}) == "va7aa0a7e32"


def test_cli_validate_exit_codes(scenario_file):
    good = scenario_file(GOOD)
    assert "4 variants" in run_cli("validate", str(good)).stdout
    listed = run_cli("validate", "--variants", str(good)).stdout
    for variant in expand(load_scenario(good)):
        assert variant.variant_id in listed
    assert "api=module num_thread=2\n" in listed  # only values that differ from the defaults
    assert "(all defaults)" in listed and "precision" not in listed
    bad = scenario_file(GOOD + "    bogus: 1\n", "bad.yaml")
    done = run_cli("validate", str(bad), check=False)
    assert done.returncode != 0
    assert f"{bad}:7: bogus: unknown key" in done.stderr
    assert "Traceback" not in done.stderr


def test_bundled_scenarios_validate():
    files = sorted((REPO / "scenarios").glob("*.yaml"))
    assert files
    for path in files:
        assert expand(load_scenario(path))


def test_json_schema_lists_factors():
    schema = json_schema()
    text = json.dumps(schema)
    assert "num_thread" in text and "max_crashes" in text
    assert schema["additionalProperties"] is False
    assert json.loads(run_cli("schema").stdout)["title"] == "mnn-stress scenario"
