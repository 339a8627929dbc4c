"""Built-in models, the user's .mnn and .onnx files, and what happens when they are bad."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stress.errors import ModelError
from stress.models.builtin import BUILTINS
from stress.models.resolve import resolve_model
from stress.scenario import load_scenario
from tests.conftest import run_cli, run_cli_bound_by_permissions


def test_builtins_have_the_promised_inputs():
    three = resolve_model("three_input", Path("."))
    assert [(t.name, t.shape) for t in three.inputs] == [
        ("source_img", (1, 3, 208, 160)),
        ("ref_img", (1, 15, 208, 160)),
        ("audio_feature", (1, 29, 5)),
    ]
    assert three.outputs[0].shape == (1, 3, 208, 160)
    for name in BUILTINS:
        info = resolve_model(name, Path("."))
        assert Path(info.path).is_file() and info.mnn_version
        assert info.path == resolve_model(name, Path(".")).path  # cached, not rebuilt


def test_user_mnn_file_is_inspected(tmp_path, scenario_file):
    model = tmp_path / "mine.mnn"
    model.write_bytes(Path(resolve_model("deep", Path(".")).path).read_bytes())
    scenario = load_scenario(scenario_file("name: mine\nmodel: mine.mnn\n"))
    assert scenario.model.source == "mnn"
    assert [t.name for t in scenario.model.inputs] == ["x"]
    assert [t.name for t in scenario.model.outputs] == ["logits"]


def test_corrupt_model_is_a_clear_error_not_a_crash(tmp_path):
    bad = tmp_path / "bad.mnn"
    bad.write_bytes(b"\x00not a model\x00" * 100)
    with pytest.raises(ModelError, match="bad.mnn"):
        resolve_model(str(bad), tmp_path)


def _onnx_model(path: Path, *outputs: str) -> None:
    """Conv then Relu: ``features`` is the output, ``conv`` too when named in ``outputs``."""
    weight = numpy_helper.from_array(np.full((4, 2, 3, 3), 0.1, np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["features"]),
        ],
        "tiny_onnx",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 2, 8, 8])],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4, 8, 8])
            for name in outputs or ("features",)
        ],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.mark.integration
def test_onnx_file_is_converted_once_and_runs(tmp_path, scenario_file):
    _onnx_model(tmp_path / "net.onnx")
    path = scenario_file(
        "name: onnx\nmodel: net.onnx\niterations: 20\nmatrix:\n  api: [session, module]\n"
    )
    scenario = load_scenario(path)
    assert scenario.model.source == "onnx"
    assert [(t.name, t.shape) for t in scenario.model.inputs] == [("image", (1, 2, 8, 8))]
    assert load_scenario(path).model.path == scenario.model.path
    run_cli("run", str(path), "--out", str(tmp_path / "run"))
    from tests.conftest import read_iterations

    rows = read_iterations(tmp_path / "run")
    assert len(rows) == 40 and set(rows.status) == {"ok"}
    assert rows.digest.nunique() == 1  # both APIs agree on the converted model


def test_conversion_neither_runs_pip_nor_leaves_files_behind(tmp_path, monkeypatch):
    """The wheel's mnnconvert command runs `pip install aliyun-log-python-sdk` (and then
    uploads telemetry); ours calls the converter itself, in a directory of its own."""
    from stress.models.probe import convert

    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "pip-calls"
    for name in ("pip", "pip3"):
        (fake / name).write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    _onnx_model(tmp_path / "net.onnx")
    info = convert(str(tmp_path / "net.onnx"), str(tmp_path / "net.mnn"))
    assert info["inputs"][0]["name"] == "image"
    assert not calls.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "net.mnn", "net.onnx"]


def test_a_failed_conversion_says_so(tmp_path):
    from stress.models.probe import convert

    (tmp_path / "bad.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(RuntimeError, match="MNN's converter failed"):
        convert(str(tmp_path / "bad.onnx"), str(tmp_path / "bad.mnn"))


def test_models_command_lists_builtins():
    out = run_cli("models").stdout
    for name in BUILTINS:
        assert name in out
    assert "audio_feature [1, 29, 5]" in out


def _symlink_loop(folder: Path) -> Path:
    (folder / "a.mnn").symlink_to(folder / "b.mnn")
    (folder / "b.mnn").symlink_to(folder / "a.mnn")
    return folder / "a.mnn"


def _folder(folder: Path) -> Path:
    (folder / "x.onnx").mkdir()
    return folder / "x.onnx"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.onnx")  # opening it to hash it would block for ever
    return folder / "pipe.onnx"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_symlink_loop, "cannot be resolved: Symlink loop"),
        (_folder, "is a folder"),
        (_fifo, "is not a regular file"),
    ],
)
def test_odd_model_paths_are_clear_errors(tmp_path, scenario_file, make, problem):
    path = make(tmp_path)
    scenario = scenario_file(f"name: odd\nmodel: {path.name}\n")
    done = run_cli("validate", str(scenario), check=False, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"{scenario}:2: model: model path {path}" in done.stderr and problem in done.stderr


def test_an_unreadable_model_file_is_a_clear_error(tmp_path, scenario_file):
    """As root, the check runs without the capabilities that read through mode 000."""
    model = tmp_path / "secret.onnx"
    _onnx_model(model)
    model.chmod(0)
    scenario = scenario_file("name: unreadable\nmodel: secret.onnx\n")
    done = run_cli_bound_by_permissions("validate", str(scenario))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot read the model file {model}: Permission denied" in done.stderr
