"""``convert`` (issue 14): an ONNX model converted once per set of converter flags, cached by
(content, flags), each variant's workers loading their own conversion, graded against the
plain conversion's clean reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stress.errors import ScenarioError
from stress.factors.convert import canonical, converter_args, flags
from stress.scenario import load_scenario
from stress.scenario.variants import expand
from tests.conftest import read_iterations, run_cli


def _random_conv(path: Path) -> None:
    """A conv with random weights: storing them as half floats changes its outputs."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((32, 8, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["features"]),
        ],
        "random_conv",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 32, 16, 16])],
        [weights, bias],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


SCENARIO = """\
name: flags
model: net.onnx
iterations: 10
matrix:
  convert: [{}, {fp16: true}, {optimize_level: 0, keep_input_format: false}]
"""


@pytest.mark.integration
def test_each_flag_set_is_its_own_cached_conversion_and_fp16_changes_outputs(
    scenario_file, tmp_path
):
    _random_conv(tmp_path / "net.onnx")
    path = scenario_file(SCENARIO)
    scenario = load_scenario(path)
    variants = expand(scenario)
    models = {v.params["convert"]: scenario.model_for(v.params) for v in variants}
    assert list(models) == ["{}", "{fp16: true}", "{keep_input_format: false, optimize_level: 0}"]
    files = {flags: Path(m.path) for flags, m in models.items()}
    assert len(set(files.values())) == 3
    # Half-float weights: the file is smaller by about 2 bytes per weight (2,304 of them).
    assert files["{}"].stat().st_size - files["{fp16: true}"].stat().st_size > 4000
    # Loaded again: the same cached files, not converted again.
    again = load_scenario(path)
    assert {v: again.model_for({"convert": v}).path for v in models} == {
        v: m.path for v, m in models.items()
    }

    run_cli("run", str(path), "--out", str(tmp_path / "run"))
    rows = read_iterations(tmp_path / "run")
    digests = rows.groupby("convert").digest.apply(set).to_dict()
    assert all(len(d) == 1 for d in digests.values())
    assert digests["{fp16: true}"] != digests["{}"]  # the workers ran the fp16 conversion
    summary = json.loads(run_cli("summary", str(tmp_path / "run"), "--json").stdout)
    grades = {v["label"]: v["grades"] for v in summary["variants"]}
    assert grades["convert={}"]["exact"] == 10
    assert grades["convert={fp16: true}"]["close"] == 10  # near the plain reference


def test_convert_is_refused_for_a_model_that_is_not_onnx(scenario_file):
    path = scenario_file("name: flags\nmodel: tiny\nmatrix:\n  convert: [{}, {fp16: true}]\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key == "matrix.convert"
    assert "ONNX" in caught.value.message


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("[{fp32: true}]", "unknown converter flag 'fp32'"),
        ("[{optimize_level: 3}]", "optimize_level: 3 is not one of 0, 1, 2"),
        ("[{fp16: 1}]", "fp16: 1 is not one of False, True"),
        ("[fp16]", "not a flag mapping"),
    ],
)
def test_malformed_flags_are_refused_naming_the_key(scenario_file, written, why):
    path = scenario_file(f"name: flags\nmodel: tiny\nmatrix:\n  convert: {written}\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key.startswith("matrix.convert")
    assert why in caught.value.message


def test_flags_round_trip_to_converter_arguments():
    text = canonical({"optimize_level": 2, "fp16": True, "keep_input_format": False})
    assert text == "{fp16: true, keep_input_format: false, optimize_level: 2}"
    assert flags(text) == {"fp16": True, "keep_input_format": False, "optimize_level": 2}
    assert converter_args(text) == [
        "--fp16",
        "--keepInputFormat=false",
        "--optimizeLevel",
        "2",
    ]
    assert converter_args("{}") == [] and converter_args("{fp16: false}") == []


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ('["{optimize_level: 2, fp16: true}"]', "not a flag mapping"),
        ('["{fp16:true}"]', "unknown converter flag 'fp16:true'"),
        ('["{fp16: yes}"]', "fp16: 'yes' is not one of False, True"),
    ],
)
def test_flags_written_as_text_must_be_the_canonical_text(scenario_file, written, why):
    """Quoted, the mapping is text: only its canonical form is taken (else one flag set
    would be two values, converted and counted apart)."""
    path = scenario_file(f"name: flags\nmodel: tiny\nmatrix:\n  convert: {written}\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key.startswith("matrix.convert")
    assert why in caught.value.message
