"""Input arrays: the seeded generators (normal, uniform, zeros, ones, large, denormal) and
.npy/.npz files, which are checked when the scenario loads and again in the worker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from stress.contract.protocol import InputPlan
from stress.coordinator.jobs import input_plans
from stress.models import TensorInfo
from stress.scenario import json_schema, load_scenario
from stress.worker.inputs import make_input, make_inputs
from tests.conftest import read_iterations, run_cli
from tests.scenario.test_scenario import error_for
from tests.scenario.test_scenario_limits import BASE, model_with_inputs  # noqa: F401  (a fixture)

SEEDED = [
    ("normal", "float32"),
    ("uniform", "float32"),
    ("normal", "int32"),
    ("uniform", "uint8"),
    ("large", "float32"),
    ("large", "float16"),
    ("large", "int32"),
    ("large", "uint8"),
    ("denormal", "float32"),
    ("denormal", "float64"),
]


@pytest.mark.parametrize(("distribution", "dtype"), SEEDED)
def test_seeded_inputs_are_reproducible_and_differ_by_seed_and_name(distribution, dtype):
    plan = InputPlan("x", [4, 8], dtype, distribution)
    first = make_input(plan, 1)
    assert first.dtype == np.dtype(dtype) and first.shape == (4, 8) and first.flags.c_contiguous
    assert first.tobytes() == make_inputs([plan], 1)[0].tobytes()
    assert first.tobytes() != make_input(plan, 2).tobytes()
    # The input's name salts the seed: two inputs of one shape must not get the same bytes.
    assert first.tobytes() != make_input(InputPlan("y", [4, 8], dtype, distribution), 1).tobytes()


@pytest.mark.parametrize(
    ("distribution", "dtype", "value"),
    [
        ("zeros", "float32", 0),
        ("ones", "float32", 1),
        ("ones", "int32", 1),
        ("denormal", "int32", 0),
    ],
)
def test_constant_inputs_are_the_same_for_every_seed(distribution, dtype, value):
    for seed in (1, 2):
        values = make_input(InputPlan("x", [3, 4], dtype, distribution), seed)
        assert values.dtype == np.dtype(dtype) and (values == value).all()


def test_an_unknown_distribution_is_refused_not_replaced():
    with pytest.raises(ValueError, match="unknown distribution 'gauss'"):
        make_input(InputPlan("x", [2], "float32", "gauss"), 1)


def test_large_float32_values_are_finite_but_their_sums_overflow():
    values = make_input(InputPlan("x", [1000], "float32", "large"), 3)
    assert np.isfinite(values).all() and (values < 0).any() and (values > 0).any()
    assert np.median(np.abs(values)) > 1e37
    with np.errstate(over="ignore"):
        assert np.isinf(np.sum(np.abs(values), dtype=np.float32))
        assert np.isinf(values[:2].prod(dtype=np.float32))


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_large_values_scale_with_the_float_type(dtype):
    values = make_input(InputPlan("x", [1000], dtype, "large"), 3)
    top = float(np.finfo(dtype).max)
    assert np.isfinite(values).all() and np.median(np.abs(values)) > top / 16


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32"])
def test_large_ints_lie_between_a_quarter_and_half_of_the_range(dtype):
    info = np.iinfo(dtype)
    quarter = (int(info.max) - int(info.min) + 1) // 4
    magnitudes = np.abs(make_input(InputPlan("x", [1000], dtype, "large"), 3).astype(np.int64))
    assert (magnitudes >= quarter).all() and (magnitudes < 2 * quarter).all()
    signs = np.sign(make_input(InputPlan("x", [1000], dtype, "large"), 3))
    assert set(signs.tolist()) == ({-1, 1} if info.min < 0 else {1})


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_denormal_values_are_all_subnormal(dtype):
    values = make_input(InputPlan("x", [10000], dtype, "denormal"), 5)
    magnitudes = np.abs(values)
    assert ((magnitudes > 0) & (magnitudes < np.finfo(dtype).smallest_normal)).all()
    assert (values < 0).any() and (values > 0).any() and len(np.unique(values)) > 1000


def test_scale_multiplies_the_generated_values():
    plain = make_input(InputPlan("x", [64], "float32", "uniform"), 1)
    doubled = make_input(InputPlan("x", [64], "float32", "uniform", scale=2.0), 1)
    np.testing.assert_array_equal(doubled, plain * 2)


@pytest.mark.parametrize("distribution", ["large", "denormal"])
def test_scale_does_not_move_large_or_denormal_values_out_of_their_range(distribution):
    """Validation refuses a scale with them; a plan that has one anyway gets the same bytes."""
    plan = InputPlan("x", [64], "float32", distribution)
    scaled = InputPlan("x", [64], "float32", distribution, scale=1e-30)
    assert make_input(plan, 1).tobytes() == make_input(scaled, 1).tobytes()


def test_a_file_that_changed_since_validation_is_refused_in_the_worker(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert make_input(InputPlan("x", [2, 3], "float32", file=str(path)), 0).tolist() == [
        [0, 1, 2],
        [3, 4, 5],
    ]
    for changed in ([3, 2], "float32"), ([2, 3], "int32"):
        with pytest.raises(ValueError, match="changed after validation"):
            make_input(InputPlan("x", *changed, file=str(path)), 0)
    path.unlink()
    with pytest.raises(ValueError, match="x.npy: input 'x': FileNotFoundError.*since validation"):
        make_input(InputPlan("x", [2, 3], "float32", file=str(path)), 0)


def test_a_big_endian_fortran_order_file_is_fed_native_and_c_contiguous(tmp_path):
    values = np.arange(12, dtype=">f4").reshape(3, 4).T
    np.save(tmp_path / "x.npy", values)
    array = make_input(InputPlan("x", [4, 3], "float32", file=str(tmp_path / "x.npy")), 0)
    assert array.dtype == np.float32 and array.dtype.isnative and array.flags.c_contiguous
    np.testing.assert_array_equal(array, values)


def test_npy_and_npz_files_reach_the_worker_byte_for_byte(scenario_file, tmp_path, monkeypatch):
    """Through a real load and plan; paths are taken from the scenario's folder, not the
    current directory, and planned absolute."""
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 7)).astype(np.float32)
    k = np.arange(105, dtype=np.int32).reshape(1, 3, 5, 7)
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", x)
    np.savez(tmp_path / "data" / "both.npz", other=x, k=k)
    scenario_file(
        """
        name: files
        model: nc4hw4_int
        inputs:
          x: {file: data/x.npy}
          k: {file: data/both.npz}
        """
    )
    monkeypatch.chdir(tmp_path / "data")
    plans = {plan.name: plan for plan in input_plans(load_scenario("../scenario.yaml"))}
    assert Path(plans["x"].file).is_absolute() and Path(plans["x"].file).samefile(
        tmp_path / "data" / "x.npy"
    )
    for seed in (0, 1):  # the seed plays no part
        arrays = dict(zip(plans, make_inputs(list(plans.values()), seed)))
        assert arrays["x"].tobytes() == x.tobytes() and arrays["k"].tobytes() == k.tobytes()


def test_a_dynamic_input_takes_the_files_shape(scenario_file, tmp_path, model_with_inputs):  # noqa: F811
    model_with_inputs(TensorInfo("x", (1, -1), "float32"))
    np.save(tmp_path / "x.npy", np.ones((1, 500), ">f4"))  # the byte order may differ
    loaded = load_scenario(scenario_file(BASE + "    inputs:\n      x: {file: x.npy}\n"))
    assert [plan.shape for plan in input_plans(loaded)] == [[1, 500]]
    given = error_for(scenario_file, BASE + "    inputs:\n      x: {file: x.npy, shape: [1, 4]}\n")
    assert given.key == "inputs.x.file" and "`shape` gives [1, 4]" in given.message
    np.save(tmp_path / "x.npy", np.ones(500, np.float32))
    rank = error_for(scenario_file, BASE + "    inputs:\n      x: {file: x.npy}\n")
    assert "holds an array of shape [500]; the model's input needs [1, -1]" in rank.message
    assert rank.fix == "save an array of shape [1, -1], where -1 is any size up to 2,147,483,647"
    neither = error_for(scenario_file, BASE + "    inputs:\n      x: {distribution: ones}\n")
    assert neither.key == "inputs.x.shape" and "`file`" in neither.fix


def test_a_file_over_2_gib_is_refused_from_its_header(scenario_file, tmp_path, model_with_inputs):  # noqa: F811
    """The header claims 2 GiB + 4 and no data follows: refused by size, never read."""
    model_with_inputs(TensorInfo("x", (-1,), "float32"))
    with open(tmp_path / "x.npy", "wb") as file:
        header = {"descr": "<f4", "fortran_order": False, "shape": (2**29 + 1,)}
        np.lib.format.write_array_header_1_0(file, header)
    error = error_for(scenario_file, BASE + "    inputs:\n      x: {file: x.npy}\n")
    assert (error.key, error.line) == ("inputs.x.file", 4)
    assert "[536870913] float32: 2,147,483,652 bytes, more than the limit of 2,147,483,648" in (
        error.message
    )


def _truncated(path: Path) -> None:
    np.save(path, np.ones((1, 3, 24, 24), np.float32))
    path.write_bytes(path.read_bytes()[:-8])


Writer = Callable[[Path], object]
ARRAY = np.ones((1, 3, 24, 24), np.float32)
FILE_ERRORS: list[tuple[str, Writer, str, str]] = [
    ("nowhere.npy", lambda d: None, "{d}/nowhere.npy does not exist", "the scenario file's folder"),
    ("dir.npy", lambda d: (d / "dir.npy").mkdir(), "dir.npy is not a regular file", ".npy or .npz"),
    ("x.txt", lambda d: np.savetxt(d / "x.txt", [1.0]), "x.txt is not a .npy or .npz", "savez"),
    ("x.npy", lambda d: (d / "x.npy").write_bytes(b"\x93NUMPY junk"), "not a valid .npy", "save"),
    ("x.npy", lambda d: _truncated(d / "x.npy"), "x.npy is not a valid .npy file", "numpy.save"),
    ("x.npz", lambda d: (d / "x.npz").write_bytes(b"PK junk"), "not a valid .npz", "savez"),
    (
        "x.npy",
        lambda d: np.save(d / "x.npy", np.array([1, "a"], object), allow_pickle=True),
        "holds Python objects (dtype object)",
        "save a plain float32 array",
    ),
    (
        "x.npz",
        lambda d: np.savez(d / "x.npz", y=ARRAY, z=ARRAY),
        "x.npz holds no array named 'x'; it has: y, z",
        "numpy.savez(path, **{'x': array})",
    ),
    (
        "x.npy",
        lambda d: np.save(d / "x.npy", ARRAY.astype(np.float64)),
        "holds float64; the model's input 'x' is float32, and inputs are never cast",
        "array.astype(numpy.float32)",
    ),
    (
        "x.npy",
        lambda d: np.save(d / "x.npy", np.ones((1, 3, 32, 32), np.float32)),
        "holds an array of shape [1, 3, 32, 32]; the model's input needs [1, 3, 24, 24]",
        "save an array of shape [1, 3, 24, 24]",
    ),
]


@pytest.mark.parametrize(("name", "write", "message", "fix"), FILE_ERRORS)
def test_a_bad_input_file_is_refused_at_load(scenario_file, tmp_path, name, write, message, fix):
    write(tmp_path)
    error = error_for(scenario_file, BASE + f"    inputs:\n      x: {{file: {name}}}\n")
    assert (error.key, error.line) == ("inputs.x.file", 4)
    assert message.format(d=tmp_path) in error.message and str(tmp_path) in error.message
    assert fix in error.fix


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        ("{file: x.npy, distribution: ones}", "inputs.x.distribution", "read from `file`"),
        ("{file: x.npy, scale: 1.0}", "inputs.x.scale", "read from `file`"),
        ("{distribution: large, scale: 2.0}", "inputs.x.scale", "distribution large"),
        ("{distribution: denormal, scale: 0.5}", "inputs.x.scale", "distribution denormal"),
    ],
)
def test_keys_that_do_not_go_together_are_refused(scenario_file, tmp_path, entry, key, message):
    np.save(tmp_path / "x.npy", ARRAY)
    error = error_for(scenario_file, BASE + f"    inputs:\n      x: {entry}\n")
    assert (error.key, error.line) == (key, 4)
    assert message in error.message and f"remove `{key.split('.')[-1]}`" in error.fix


def test_the_json_schema_offers_the_new_distributions_and_file():
    schema = json.dumps(json_schema())
    assert '"denormal"' in schema and '"large"' in schema and '"file"' in schema


def test_large_and_denormal_with_the_default_scale_are_accepted(scenario_file):
    text = BASE + "    inputs:\n      x: {distribution: large, scale: 1.0}\n"
    assert load_scenario(scenario_file(text)).spec.inputs["x"].distribution == "large"
    denormal = scenario_file(BASE + "    inputs:\n      x: {distribution: denormal}\n", "d.yaml")
    assert [plan.distribution for plan in input_plans(load_scenario(denormal))] == ["denormal"]


@pytest.mark.integration
def test_a_file_input_runs_end_to_end(scenario_file, tmp_path):
    """y = 2x + k on a real worker, with x and k from files."""
    np.save(tmp_path / "x.npy", np.full((1, 3, 5, 7), 1.5, np.float32))
    np.savez(tmp_path / "k.npz", k=np.full((1, 3, 5, 7), 4, np.int32))
    path = scenario_file(
        """
        name: from_files
        model: nc4hw4_int
        iterations: 3
        inputs:
          x: {file: x.npy}
          k: {file: k.npz}
        """
    )
    run_cli("run", str(path), "--out", str(tmp_path / "run"))
    rows = read_iterations(tmp_path / "run")
    assert len(rows) == 3 and set(rows.status) == {"ok"}
    assert set(rows["min"]) == set(rows["max"]) == {7.0}
