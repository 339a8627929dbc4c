"""Scenario values that cannot work are refused before anything runs: non-finite or out-of-range
numbers and durations, and input shapes the model cannot take."""

from __future__ import annotations

import json
import math

import pytest

from stress.models import ModelInfo, TensorInfo
from stress.scenario import load_scenario, parse_duration
from stress.scenario.schema import MAX_NAME
from tests.conftest import run_cli
from tests.scenario.test_scenario import error_for

BASE = """
    name: demo
    model: tiny
"""


@pytest.fixture
def model_with_inputs(monkeypatch):
    """Make every scenario's model one with the given inputs, without building it."""

    def use(*inputs: TensorInfo) -> None:
        model = ModelInfo("fake", "/nowhere/fake.mnn", "mnn", inputs, (), "3.6.1")
        monkeypatch.setattr("stress.models.resolve.resolve_model", lambda *_, **__: model)

    return use


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("duration: .nan", "is not a duration"),
        ("duration: .inf", "is not a duration"),
        ("duration: -.inf", "is not a duration"),
        ("timeout: .nan", "is not a duration"),  # would disable hang detection
        ("timeout: .inf", "is not a duration"),  # would kill every worker
        ("timeout: nans", "is not a duration"),
        ("timeout: 1" + "0" * 400 + "s", "is longer than the limit of 24h"),  # beyond a float
        ("duration: 0s", "must be positive"),
        ("duration: '\uff12\uff10s'", "is not a duration"),  # full-width digits
    ],
)
def test_durations_must_be_finite(scenario_file, line, problem):
    error = error_for(scenario_file, BASE + f"    {line}\n")
    assert (error.key, error.line) == (line.split(":")[0], 3)
    assert problem in error.message


@pytest.mark.parametrize(
    ("line", "fix"),
    [
        ("duration: 20", "20 has no unit; write 20s for seconds (or ms, m, h)"),
        ("duration: 1.5", "1.5 has no unit; write 1.5s for seconds"),
        ("timeout: 90", "90 has no unit; write 90s"),
        ("timeout: '90'", "'90' has no unit; write 90s"),
        ("timeout: 1e3", "has no unit"),
    ],
)
def test_a_duration_without_a_unit_is_refused_with_the_fix(scenario_file, line, fix):
    """``duration: 20`` could mean seconds or minutes: the writer says which."""
    error = error_for(scenario_file, BASE + f"    {line}\n")
    assert (error.key, error.line) == (line.split(":")[0], 3)
    assert fix in error.message
    assert error.fix == "give the duration with its unit: 500ms, 30s, 2m or 8h"


@pytest.mark.parametrize(
    ("line", "limit"),
    [
        ("duration: 169h", "168h (7 days)"),
        ("duration: 604801s", "168h (7 days)"),
        ("timeout: 25h", "24h"),
        ("timeout: 500ms", "1s"),
        ("timeout: 0.001s", "1s"),
    ],
)
def test_durations_have_limits_the_message_names(scenario_file, line, limit):
    error = error_for(scenario_file, BASE + f"    {line}\n")
    assert error.key == line.split(":")[0]
    assert f"limit of {limit}" in error.message


def test_durations_at_their_limits_are_accepted(scenario_file):
    spec = load_scenario(scenario_file(BASE + "    duration: 168h\n    timeout: 24h\n")).spec
    assert (spec.duration, spec.timeout) == (7 * 86400, 86400)
    assert load_scenario(scenario_file(BASE + "    timeout: 1s\n", "b.yaml")).spec.timeout == 1.0


def test_parse_duration_refuses_non_finite_and_out_of_range_values():
    refused = {math.nan: "not a duration", math.inf: "not a duration", -math.inf: "not a"}
    refused |= {10**400: "no unit", "200h": "limit of", "9" * 400 + "s": "limit of"}
    for value, problem in refused.items():
        with pytest.raises(ValueError, match=problem):
            parse_duration(value)
    with pytest.raises(ValueError, match="limit of 1m"):
        parse_duration("2m", max_s=60)
    with pytest.raises(ValueError, match="limit of 500ms"):
        parse_duration("100ms", min_s=0.5)
    assert parse_duration("168h") == 7 * 86400  # the CLI's --duration: a week at most


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("seed: 9223372036854775808", "seed"),  # 2**63
        ("seed: -1", "seed"),
        ("iterations: 4611686018427387904", "iterations"),  # 2**62
        ("workers: 1025", "workers"),
        ("max_crashes: 1000001", "max_crashes"),
        ("record: {max_value_bytes: 1073741825}", "record.max_value_bytes"),
        ("inputs: {x: {scale: .nan}}", "inputs.x.scale"),  # NaN inputs: a false finding
        ("inputs: {x: {scale: .inf}}", "inputs.x.scale"),
        ("inputs: {x: {scale: -1e400}}", "inputs.x.scale"),
        ("inputs: {x: {shape: [1, 3, 24, 2147483648]}}", "inputs.x.shape[3]"),
    ],
)
def test_numbers_out_of_range_are_refused(scenario_file, text, key):
    error = error_for(scenario_file, BASE + f"    {text}\n")
    assert (error.key, error.line) == (key, 3)
    assert "finite" in error.message or "than or equal to" in error.message


def test_numbers_at_their_limits_are_accepted(scenario_file):
    spec = load_scenario(
        scenario_file(
            BASE
            + """
    seed: 9223372036854775807
    iterations: 4611686018427387903
    workers: 1024
    max_crashes: 1000000
    record: {max_value_bytes: 1073741824}
    inputs: {x: {scale: -1.0e+30}}
"""
        )
    ).spec
    assert (spec.seed, spec.iterations, spec.workers) == (2**63 - 1, 2**62 - 1, 1024)
    assert spec.record.max_value_bytes == 2**30 and spec.inputs["x"].scale == -1e30


def test_a_different_shape_for_a_static_input_is_refused(scenario_file):
    # MNN 3.6.1 runs tiny with a 1x3x32x32 input and reports 5 distinct outputs in 5 iterations.
    error = error_for(scenario_file, BASE + "    inputs:\n      x: {shape: [1, 3, 32, 32]}\n")
    assert (error.key, error.line) == ("inputs.x.shape", 4)
    assert "the model's input 'x' has the fixed shape [1, 3, 24, 24]" in error.message
    assert "never wrote" in error.message
    assert "remove `shape`" in error.fix and "dynamic (-1)" in error.fix


def test_the_same_shape_for_a_static_input_is_accepted(scenario_file):
    loaded = load_scenario(scenario_file(BASE + "    inputs:\n      x: {shape: [1, 3, 24, 24]}\n"))
    assert loaded.spec.inputs["x"].shape == [1, 3, 24, 24]


def test_only_the_dynamic_dimensions_of_an_input_may_be_chosen(scenario_file, model_with_inputs):
    model_with_inputs(TensorInfo("x", (1, 3, -1, -1), "float32"))
    error = error_for(scenario_file, BASE + "    inputs:\n      x: {shape: [1, 4, 100, 200]}\n")
    assert (error.key, error.line) == ("inputs.x.shape[1]", 4)
    assert "[1, 3, -1, -1]" in error.message
    assert error.fix == "give [1, 3, 100, 200]"
    ok = scenario_file(BASE + "    inputs:\n      x: {shape: [1, 3, 100, 200]}\n", "ok.yaml")
    assert load_scenario(ok).spec.inputs["x"].shape == [1, 3, 100, 200]


def test_an_input_over_2_gib_is_refused_by_its_dtype_size(scenario_file, model_with_inputs):
    model_with_inputs(TensorInfo("x", (1, -1, -1), "float32"), TensorInfo("b", (-1,), "uint8"))
    two_gib = "inputs:\n      x: {shape: [1, 16384, 32768]}\n      b: {shape: [2147483647]}\n"
    assert load_scenario(scenario_file(BASE + "    " + two_gib)).spec.inputs["b"].shape
    error = error_for(scenario_file, BASE + "    " + two_gib.replace("32768", "32769"))
    assert (error.key, error.line) == ("inputs.x.shape", 4)
    assert "[1, 16384, 32769] float32 is 2,147,549,184 bytes" in error.message
    assert "limit of 2,147,483,648" in error.message


def test_a_name_too_long_for_file_names_is_refused(scenario_file):
    """A 260-character name once ran, then made every summary and report fail (its reference
    log's file name was too long)."""
    error = error_for(scenario_file, f"name: {'n' * 260}\nmodel: tiny\n")
    assert (error.key, error.line) == ("name", 1)
    assert f"at most {MAX_NAME} characters" in error.message


@pytest.mark.integration
def test_the_longest_name_runs_and_is_summarised(scenario_file, tmp_path):
    name = "n" * MAX_NAME
    path, out = scenario_file(f"name: {name}\nmodel: tiny\niterations: 5\n"), tmp_path / "run"
    run_cli("run", str(path), "--out", str(out))
    assert (out / "reference" / "logs" / f"reference-{name}-w0.log").exists()
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    assert [v["scenario"] for v in summary["variants"]] == [name]
    run_cli("report", str(out), "--html", str(tmp_path / "report.html"))


@pytest.mark.parametrize("option", ["--duration", "--progress-every"])
@pytest.mark.parametrize(
    ("value", "said"), [("20", "'20' has no unit; write 20s"), ("", "'' is not a duration")]
)
def test_a_duration_on_the_command_line_needs_a_unit_too(tmp_path, option, value, said):
    done = run_cli("run", "scenarios", option, value, "--out", str(tmp_path / "r"), check=False)
    assert done.returncode == 2
    assert f"Invalid value for {option}: {said}" in done.stderr
    assert not (tmp_path / "r").exists()
