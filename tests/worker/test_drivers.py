"""Both drivers against every built-in model give exactly what a direct MNN call gives."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import MNN
import numpy as np
import pytest

from stress.contract.protocol import InputPlan
from stress.factors import REGISTRY, complete
from stress.models.builtin import BUILTINS
from stress.models.resolve import resolve_model
from stress.worker.drivers import DriverOptions, ModelSpec, make_engine
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
    options = DriverOptions.of(complete({"api": api, **params}))
    binding = make_engine(options, spec).bind(0)
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


INPUT_PATHS = [("session", p) for p in ("nhwc", "nc4hw4", "host_write")] + [
    ("module", p) for p in ("numpy_array", "placeholder")
]


@pytest.mark.parametrize("model", NCHW_MODELS)
@pytest.mark.parametrize(("api", "path"), INPUT_PATHS)
def test_every_input_path_gives_the_direct_calls_output(model, api, path):
    """Layouts converted right (NHWC at rank 3 too, NC4HW4 with C not a multiple of 4) and
    the path's objects rewritten every iteration (a session's run overwrites its inputs)."""
    driver, arrays, info = driver_for(api, model, input_path=path)
    expected = direct_session(info.path, dict(zip([t.name for t in info.inputs], arrays)))
    for _ in range(3):
        rc, outputs = driver.iteration(arrays)
        assert rc == 0
        for got, want in zip(outputs, expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_nc4hw4_packing_puts_channels_in_blocks_of_four():
    from stress.worker.drivers.session_feed import as_nc4hw4

    array = np.arange(2 * 5 * 2 * 3, dtype=np.float32).reshape(2, 5, 2, 3)
    shape, packed, _ = as_nc4hw4(array)
    assert shape == [2, 8, 2, 3] and packed.shape == (2, 8, 2, 3)
    blocks = packed.reshape(2, 2, 2, 3, 4)  # [N, C/4, H, W, 4]
    for c in range(8):
        want = array[:, c] if c < 5 else np.zeros((2, 2, 3), np.float32)
        np.testing.assert_array_equal(blocks[:, c // 4, :, :, c % 4], want)


class SpyInput:
    """Stands in for a session input tensor, to see what a feeder hands over (the feeders'
    own choice of call; what MNN makes of each is tested above on real sessions)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.view = np.zeros(shape, np.float32)
        self.copied: list = []

    def copyFrom(self, host) -> bool:  # noqa: N802 (MNN's name)
        self.copied.append(host)
        return True

    def getNumpyData(self) -> np.ndarray:  # noqa: N802
        return self.view


@pytest.mark.parametrize(
    ("path", "shape"),
    [("tensor_copy", [1, 3, 4, 5]), ("nhwc", [1, 4, 5, 3]), ("nc4hw4", [1, 4, 4, 5])],
)
def test_each_session_path_hands_mnn_its_own_host_tensor(path, shape):
    from types import SimpleNamespace

    from stress.worker.drivers.session_feed import feeder

    array = np.arange(60, dtype=np.float32).reshape(1, 3, 4, 5)
    spy = SpyInput(array.shape)
    feeder(path, "none")(SimpleNamespace(inputs=[spy], halide=[MNN.Halide_Type_Float]), [array])
    (host,) = spy.copied
    assert list(host.getShape()) == shape
    data = np.array(host.getData(), np.float32)
    if path == "nhwc":
        np.testing.assert_array_equal(data, np.moveaxis(array, 1, -1).reshape(-1))
    elif path == "tensor_copy":
        np.testing.assert_array_equal(data, array.reshape(-1))


def test_host_write_writes_into_the_session_inputs_view():
    from types import SimpleNamespace

    from stress.worker.drivers.session_feed import feeder

    array = np.arange(60, dtype=np.float32).reshape(1, 3, 4, 5)
    spy = SpyInput(array.shape)
    feeder("host_write", "none")(SimpleNamespace(inputs=[spy]), [array])
    assert spy.copied == [] and np.array_equal(spy.view, array)


class SpyMisuseInput(SpyInput):
    def fromNumpy(self, array) -> None:  # noqa: N802 (MNN's name)
        self.copied.append(("fromNumpy", array))


def fed_by_misuse(misuse: str, inputs: list[np.ndarray]) -> tuple[list, list]:
    """What a Session API misuse feeder hands each spy input, and the names asked of the
    Interpreter."""
    from types import SimpleNamespace

    from stress.worker.drivers.session_feed import feeder

    spies = [SpyMisuseInput(a.shape) for a in inputs]
    asked: list = []

    def get_session_input(session, name):
        asked.append(name)
        return SpyMisuseInput((1,))

    binding = SimpleNamespace(
        inputs=spies,
        halide=[MNN.Halide_Type_Float] * len(inputs),
        interpreter=SimpleNamespace(mnn=SimpleNamespace(getSessionInput=get_session_input)),
        session=None,
    )
    feeder("tensor_copy", misuse)(binding, inputs)
    return [spy.copied for spy in spies], asked


def test_each_session_misuse_makes_its_mistake():
    from stress.factors.misuse import UNKNOWN_NAME

    a, b = np.ones((1, 3, 4, 5), np.float32), np.zeros((1, 2, 3), np.float32)
    fed, _ = fed_by_misuse("missing_input", [a, b])
    assert [len(f) for f in fed] == [1, 0]  # the last input is never given
    fed, asked = fed_by_misuse("extra_input", [a, b])
    assert [len(f) for f in fed] == [1, 1] and asked == [UNKNOWN_NAME]
    fed, _ = fed_by_misuse("wrong_rank", [a, b])
    assert [list(f[0].getShape()) for f in fed] == [[60], [6]]
    fed, _ = fed_by_misuse("from_numpy", [a, b])
    assert [f[0][0] for f in fed] == ["fromNumpy", "fromNumpy"]
    fed, _ = fed_by_misuse("bare_ndarray", [a, b])
    assert fed[0][0] is a and fed[1][0] is b
    fed, _ = fed_by_misuse("untyped_tensor", [a, b])
    assert isinstance(fed[0][0], MNN.Tensor) and list(fed[0][0].getShape()) != [1, 3, 4, 5]


@pytest.mark.parametrize(
    ("misuse", "check"),
    [
        ("missing_input", lambda v, n: len(v) == n - 1),
        ("extra_input", lambda v, n: len(v) == n + 1),
        ("wrong_rank", lambda v, n: len(v) == n and all(len(x.shape) == 1 for x in v)),
        ("bare_ndarray", lambda v, n: isinstance(v, np.ndarray)),
    ],
)
def test_each_module_misuse_makes_its_mistake(misuse, check):
    binding, arrays, _ = driver_for("module", "three_input", misuse=misuse)
    binding.feed(arrays)
    assert check(binding.variables, len(arrays))


def test_module_paths_use_placeholders_and_mnn_numpy(monkeypatch):
    binding, arrays, _ = driver_for("module", "three_input", input_path="placeholder")
    binding.feed(arrays)
    first = list(binding.variables)
    binding.feed(arrays)
    assert len(first) == 3 and all(a is b for a, b in zip(first, binding.variables))
    assert all(a is b for a, b in zip(first, binding.placeholders))
    made = []
    real = MNN.numpy.array
    monkeypatch.setattr(MNN.numpy, "array", lambda *a, **k: made.append(1) or real(*a, **k))
    binding, arrays, _ = driver_for("module", "three_input", input_path="numpy_array")
    binding.feed(arrays)
    assert len(made) == 3


def test_driver_options_are_the_factor_values_and_nothing_is_missing():
    """Built once from complete params; a factor the drivers read and the registry lost is a
    KeyError when the worker starts, never a default a driver made up."""
    options = DriverOptions.of(complete({"api": "module", "sharing": "clone"}))
    assert (options.api, options.sharing, options.lifecycle) == ("module", "clone", "reuse")
    assert {f.name for f in fields(DriverOptions)} <= set(REGISTRY)
    with pytest.raises(KeyError):
        DriverOptions.of({"api": "session"})
