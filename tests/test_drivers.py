"""Both drivers against every built-in model give exactly what a direct MNN call gives."""

from __future__ import annotations

from pathlib import Path

import MNN
import numpy as np
import pytest

from stress.contract.protocol import InputPlan
from stress.factors import complete
from stress.models.builtin import BUILTINS
from stress.models.resolve import resolve_model
from stress.worker.drivers import ModelSpec, make_engine
from stress.worker.inputs import make_inputs


def direct_session(path: str, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession({"numThread": 1})
    for name, array in inputs.items():
        tensor = MNN.Tensor(
            array.shape, MNN.Halide_Type_Float, array, MNN.Tensor_DimensionType_Caffe
        )
        interpreter.getSessionInput(session, name).copyFrom(tensor)
    assert interpreter.runSession(session) == 0
    outputs = interpreter.getSessionOutputAll(session)
    return [outputs[n].getNumpyData().copy() for n in sorted(outputs)]


def spec_for(model: str) -> tuple[ModelSpec, list[InputPlan]]:
    info = resolve_model(model, Path("."))
    plans = [InputPlan(t.name, list(t.shape), t.dtype) for t in info.inputs]
    inputs = [(p.name, p.shape, p.dtype) for p in plans]
    return ModelSpec(info.path, inputs, [t.name for t in info.outputs], {"numThread": 1}), plans


def driver_for(api: str, model: str, **params):
    """A set-up binding on a built-in model, its input arrays (seed 7) and the model's
    description."""
    spec, plans = spec_for(model)
    binding = make_engine(complete({"api": api, **params}), spec).bind(0)
    binding.setup()
    return binding, make_inputs(plans, seed=7), resolve_model(model, Path("."))


NCHW_MODELS = [name for name in BUILTINS if name != "nc4hw4_int"]


@pytest.mark.parametrize("model", NCHW_MODELS)
@pytest.mark.parametrize("api", ["session", "module"])
def test_driver_matches_a_direct_mnn_call(model, api):
    driver, arrays, info = driver_for(api, model)
    expected = direct_session(info.path, dict(zip([t.name for t in info.inputs], arrays)))
    for _ in range(3):
        rc, outputs = driver.iteration(arrays)
        assert rc == 0
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            assert got.shape == want.shape
            np.testing.assert_array_equal(got, want)
            assert np.isfinite(got).all() and got.std() > 0  # a real, non-trivial output


@pytest.mark.parametrize("api", ["session", "module"])
def test_nc4hw4_output_and_int_input_match_numpy(api):
    """Against numpy, not MNN: the raw NC4HW4 buffer read as NCHW, or k fed as float, fails."""
    driver, (x, k), info = driver_for(api, "nc4hw4_int")
    assert (x.dtype, k.dtype) == (np.float32, np.int32) and k.any()
    rc, (y,) = driver.iteration([x, k])
    assert rc == 0 and y.shape == (1, 3, 5, 7)
    np.testing.assert_array_equal(y, 2 * x + k.astype(np.float32))


def test_inputs_are_reproducible_from_the_seed():
    plan = InputPlan("x", [2, 3], "float32")
    assert make_inputs([plan], 1)[0].tobytes() == make_inputs([plan], 1)[0].tobytes()
    assert make_inputs([plan], 1)[0].tobytes() != make_inputs([plan], 2)[0].tobytes()
    assert not make_inputs([InputPlan("x", [4], "float32", "zeros")], 1)[0].any()
    # The input's name salts the seed: two inputs of one shape must not get the same bytes.
    other = InputPlan("y", [2, 3], "float32")
    assert make_inputs([plan], 1)[0].tobytes() != make_inputs([other], 1)[0].tobytes()
