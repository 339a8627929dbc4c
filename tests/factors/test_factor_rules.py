"""Scenario validation of the factor keys: combination rules, ``exclude:``, MNN config knobs,
backends and variant ids. In-process, against the real MNN wheel; no worker processes."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stress.errors import ScenarioError
from stress.factors import REGISTRY, conflicts, defaults, mnn_config, shown
from stress.models.resolve import available_backends, resolve_model
from stress.scenario import load_scenario
from stress.scenario.variants import expand, variant_id
from tests.conftest import REPO

HEAD = """\
name: rules
model: tiny
iterations: 5
"""


def scenario_text(matrix: list[tuple[str, Any]], extra: str = "") -> str:
    """A scenario whose matrix has the keys in the given order (one line each)."""
    lines = [HEAD.rstrip("\n"), "matrix:"]
    for key, values in matrix:
        values = values if isinstance(values, list) else [values]
        lines.append(f"  {key}: [{', '.join(map(shown, values))}]")
    return "\n".join(lines) + "\n" + extra


def line_number(text: str, prefix: str) -> int:
    """The 1-based line of the only line that starts with ``prefix``."""
    found = [i + 1 for i, line in enumerate(text.splitlines()) if line.startswith(prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def refused(scenario_file, text: str, name: str = "scenario.yaml") -> ScenarioError:
    path = scenario_file(text, name)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.file == str(path)
    assert str(path) in caught.value.render()
    return caught.value


def variants_of(scenario_file, text: str, name: str = "scenario.yaml"):
    return expand(load_scenario(scenario_file(text, name)))


# --- 1. every combination rule is refused, naming both keys, with a working exclude fix ---

# (rule owner key, value), the rule's other key, the matrix's other values, and a valid
# alternative value of the owner key.
RULES = [
    pytest.param(
        ("sharing", "clone"), "api", {"api": "session", "threads": 2}, "own", id="clone-session"
    ),
    pytest.param(
        ("sharing", "interpreter"),
        "api",
        {"api": "module", "threads": 2},
        "own",
        id="interpreter-module",
    ),
    pytest.param(("sharing", "session"), "threads", {"threads": 1}, "own", id="sharing-1-thread"),
    pytest.param(
        ("sharing", "interpreter"), "threads", {"threads": 1}, "own", id="interpreter-1-thread"
    ),
    pytest.param(
        ("sharing", "clone"), "threads", {"api": "module", "threads": 1}, "own", id="clone-1-thread"
    ),
    pytest.param(("caller_lock", "all"), "threads", {"threads": 1}, "none", id="lock-all-1-thread"),
    pytest.param(("caller_lock", "setup"), "threads", {"threads": 1}, "none", id="lock-1-thread"),
    pytest.param(
        ("lifecycle", "module_per_iteration"),
        "api",
        {"api": "session"},
        "reuse",
        id="module-per-iteration-session-api",
    ),
    pytest.param(
        ("lifecycle", "session_per_iteration"),
        "api",
        {"api": "module"},
        "reuse",
        id="session-per-iteration-module-api",
    ),
    pytest.param(
        ("lifecycle", "interpreter_per_iteration"),
        "sharing",
        {"sharing": "interpreter", "threads": 2},
        "reuse",
        id="interpreter-per-iteration-shared-interpreter",
    ),
    pytest.param(
        ("lifecycle", "session_per_iteration"),
        "sharing",
        {"sharing": "session", "threads": 2},
        "reuse",
        id="session-per-iteration-shared-session",
    ),
    pytest.param(
        ("inputs_written", "once"),
        "lifecycle",
        {"lifecycle": "session_per_iteration"},
        "every_run",
        id="once-session-per-iteration",
    ),
    pytest.param(
        ("inputs_written", "once"),
        "lifecycle",
        {"lifecycle": "interpreter_per_iteration"},
        "every_run",
        id="once-interpreter-per-iteration",
    ),
    pytest.param(("input_path", "nhwc"), "api", {"api": "module"}, "const", id="nhwc-module"),
    pytest.param(
        ("input_path", "placeholder"), "api", {"api": "session"}, "tensor_copy", id="placeholder"
    ),
    pytest.param(("misuse", "from_numpy"), "api", {"api": "module"}, "none", id="from-numpy"),
    pytest.param(
        ("misuse", "wrong_rank"),
        "input_path",
        {"input_path": "host_write"},
        "none",
        id="misuse-on-another-path",
    ),
    pytest.param(
        ("input_lifetime", "freed"),
        "input_path",
        {"input_path": "nc4hw4"},
        "copy",
        id="lifetime-of-a-packed-copy",
    ),
    pytest.param(
        ("pressure_siblings", 2), "pressure_mib", {"pressure_mib": 0}, 0, id="pressure-no-size"
    ),
    pytest.param(
        ("rlimit_as_from", "setup"),
        "rlimit_as_headroom_mib",
        {"rlimit_as_headroom_mib": None},
        "loop",
        id="cap-at-setup-without-a-cap",
    ),
    pytest.param(
        ("memcheck", "on"),
        "rlimit_as_headroom_mib",
        {"rlimit_as_headroom_mib": 64},
        "off",
        id="memcheck-with-a-cap",
        marks=pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed"),
    ),
]


@pytest.mark.parametrize(("owner", "partner", "others", "alternative"), RULES)
def test_combination_rule_is_refused_naming_both_keys(
    scenario_file, owner, partner, others, alternative
):
    key, value = owner
    # Exactly this one rule fires for the combination.
    assert [c.keys for c in conflicts({**others, key: value})] == [(key, partner)]
    # The owner's key comes last, so its line differs from `matrix:` and the other keys' lines.
    matrix = [*others.items(), (key, value)]
    text = scenario_text(matrix)
    error = refused(scenario_file, text)

    assert error.key == f"matrix.{key}"
    assert error.line == line_number(text, f"  {key}:")
    assert error.line != line_number(text, f"  {partner}:")
    assert f"{key}={value}" in error.message
    assert re.search(rf"\b{partner}\b", error.message.replace(f"{key}={value}", ""))
    # The fix names both keys with the values that clash, as an entry to paste.
    assert f"exclude: [{{{key}: {value}, {partner}: {shown(others[partner])}}}]" in error.fix

    # The suggested exclude entry really is a fix: with a valid alternative value beside the
    # conflicting one, adding exactly what the fix says loads and keeps only the alternative.
    suggested = re.search(r"`(exclude: .*)`", error.fix)
    assert suggested, error.fix
    fixed_matrix = [*others.items(), (key, [alternative, value])]
    fixed = scenario_text(fixed_matrix, suggested.group(1) + "\n")
    variants = variants_of(scenario_file, fixed, "fixed.yaml")
    assert [v.params[key] for v in variants] == [alternative]
    # Without the exclude the same two-valued matrix is still refused.
    again = refused(scenario_file, scenario_text(fixed_matrix), "unfixed.yaml")
    assert again.key == f"matrix.{key}"


def test_rule_table_covers_every_rule():
    """Every rule in the registry is exercised by a case above (a new rule needs a case)."""
    covered = set()
    for case in RULES:
        (key, value), _, others, _ = case.values
        for found in conflicts({**others, key: value}):
            covered.add(found.keys)
    every = {rule.keys for factor in REGISTRY.values() for rule in factor.rules}
    assert covered == every


# --- 2. allowed combinations load ---


@pytest.mark.parametrize(
    "matrix",
    [
        pytest.param(
            {
                "sharing": "interpreter",
                "lifecycle": "session_per_iteration",
                "threads": 2,
                "caller_lock": "setup",
            },
            id="shared-interpreter-new-session-each-iteration",
        ),
        pytest.param({"api": "module", "sharing": "clone", "threads": 4}, id="module-clone"),
        pytest.param(
            {"inputs_written": "once", "api": "module", "lifecycle": "module_per_iteration"},
            id="once-module-per-iteration",
        ),
    ],
)
def test_allowed_combinations_load(scenario_file, matrix):
    assert conflicts(matrix) == []
    variants = variants_of(scenario_file, scenario_text(list(matrix.items())))
    assert len(variants) == 1
    params = variants[0].params
    assert {k: params[k] for k in matrix} == matrix
    assert set(params) == set(REGISTRY)


# --- 3. exclude: ---

CROSS = [
    ("api", ["session", "module"]),
    ("num_thread", [1, 2]),
    ("threads", [1, 2, 4]),
]  # 12 variants, no conflicts


def test_exclude_removes_exactly_the_matching_variants(scenario_file):
    assert len(variants_of(scenario_file, scenario_text(CROSS), "all.yaml")) == 12

    text = scenario_text(CROSS, "exclude:\n  - {api: module, threads: [2, 4]}\n")
    variants = variants_of(scenario_file, text, "list.yaml")
    assert len(variants) == 12 - 2 * 2
    kept = {(v.params["api"], v.params["threads"], v.params["num_thread"]) for v in variants}
    assert not any(api == "module" and threads in (2, 4) for api, threads, _ in kept)
    # An entry needs all its keys to match: the other API keeps threads 2 and 4.
    assert {("session", t, n) for t in (1, 2, 4) for n in (1, 2)} <= kept
    assert {("module", 1, 1), ("module", 1, 2)} <= kept
    assert len({v.variant_id for v in variants}) == len(variants)


def test_exclude_takes_a_single_value_or_a_list(scenario_file):
    single = scenario_text(CROSS, "exclude:\n  - {api: module, threads: 2}\n")
    listed = scenario_text(CROSS, "exclude:\n  - {api: [module], threads: [2]}\n")
    one = variants_of(scenario_file, single, "single.yaml")
    other = variants_of(scenario_file, listed, "listed.yaml")
    assert len(one) == 10
    assert [v.variant_id for v in one] == [v.variant_id for v in other]
    assert not any(v.params["api"] == "module" and v.params["threads"] == 2 for v in one)

    # Several entries: each removes its own variants.
    two = scenario_text(CROSS, "exclude:\n  - {api: module, threads: 2}\n  - {num_thread: 2}\n")
    variants = variants_of(scenario_file, two, "two.yaml")
    assert len(variants) == 5
    assert all(v.params["num_thread"] == 1 for v in variants)


def test_exclude_that_leaves_nothing_is_refused(scenario_file):
    text = scenario_text(CROSS, "exclude:\n  - {api: [session, module]}\n")
    error = refused(scenario_file, text)
    assert "exclude" in error.message
    assert "no variant" in error.message
    assert error.key == "exclude"
    assert error.line == line_number(text, "exclude:")


def test_exclude_with_unknown_key_is_refused(scenario_file):
    text = scenario_text(CROSS, "exclude:\n  - {api: module, sharng: own}\n")
    error = refused(scenario_file, text)
    assert "sharng" in error.key
    assert error.key.startswith("exclude")
    assert "unknown key" in error.message
    assert error.line == line_number(text, "  - {api: module, sharng")


def test_exclude_with_invalid_value_is_refused(scenario_file):
    text = scenario_text(CROSS, "exclude:\n  - {sharing: bogus}\n")
    error = refused(scenario_file, text)
    assert error.key.startswith("exclude") and "sharing" in error.key
    assert "bogus" in error.message and "not one of" in error.message
    error = refused(scenario_file, scenario_text(CROSS, "exclude:\n  - {threads: 0}\n"), "t.yaml")
    assert "threads" in error.key and "below the minimum" in error.message


# --- 4. crossing the two APIs with sharing needs an exclude ---

API_BY_SHARING = [("api", ["session", "module"]), ("sharing", ["own", "clone"]), ("threads", 2)]


def test_api_by_sharing_needs_exclude(scenario_file):
    error = refused(scenario_file, scenario_text(API_BY_SHARING))
    assert "sharing=clone" in error.message and "api=session" in error.message
    assert "exclude: [{sharing: clone, api: session}]" in error.fix

    text = scenario_text(API_BY_SHARING, "exclude: [{api: session, sharing: clone}]\n")
    variants = variants_of(scenario_file, text, "excluded.yaml")
    combos = {(v.params["api"], v.params["sharing"]) for v in variants}
    assert combos == {("session", "own"), ("module", "own"), ("module", "clone")}
    assert all(v.params["threads"] == 2 for v in variants)


# --- 5. MNN runtime config ---


def test_mnn_config_defaults_are_the_skeletons():
    assert mnn_config({}) == {"numThread": 1, "precision": "normal"}
    assert mnn_config(defaults()) == {"numThread": 1, "precision": "normal"}


def test_mnn_config_knobs():
    assert mnn_config({"memory_mode": "low"})["memory"] == 2
    assert mnn_config({"memory_mode": "high"})["memory"] == 1
    assert mnn_config({"power_mode": "high"})["power"] == 1
    assert mnn_config({"power_mode": "low"})["power"] == 2
    assert mnn_config({"backend": "opencl"})["backend"] == "OPENCL"
    assert "backend" not in mnn_config({"backend": "cpu"})
    assert mnn_config({"num_thread": 4, "precision": "low"}) == {
        "numThread": 4,
        "precision": "low",
    }
    # pymnn reads memory and power only as integers: a string would be silently ignored.
    knobs = mnn_config({"memory_mode": "low", "power_mode": "high"})
    assert isinstance(knobs["memory"], int) and isinstance(knobs["power"], int)


def test_real_mnn_runs_with_memory_and_power_modes():
    import MNN

    model = resolve_model("tiny", Path("."))
    interpreter = MNN.Interpreter(model.path)
    config = mnn_config({"memory_mode": "low", "power_mode": "low"})
    assert config == {"numThread": 1, "precision": "normal", "memory": 2, "power": 2}
    session = interpreter.createSession(config)
    assert session is not None
    source = interpreter.getSessionInput(session)
    shape = tuple(model.inputs[0].shape)
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    host = MNN.Tensor(shape, MNN.Halide_Type_Float, data, MNN.Tensor_DimensionType_Caffe)
    source.copyFrom(host)
    assert interpreter.runSession(session) == 0
    output = interpreter.getSessionOutput(session)
    assert tuple(output.getShape()) == tuple(model.outputs[0].shape)


# --- 6. backends ---


def test_cpu_backend_is_available_and_loads(scenario_file):
    model = resolve_model("tiny", Path("."))
    assert "cpu" in available_backends(model.path)
    variants = variants_of(scenario_file, scenario_text([("backend", "cpu")]))
    assert [v.params["backend"] for v in variants] == ["cpu"]


def test_missing_backend_is_refused(scenario_file):
    model = resolve_model("tiny", Path("."))
    available = available_backends(model.path)
    if "opencl" in available:
        pytest.skip("this MNN wheel has OpenCL: the refusal cannot be shown with it")
    text = scenario_text([("api", "session"), ("backend", ["cpu", "opencl"])])
    error = refused(scenario_file, text)
    assert "backend opencl is not in this MNN wheel" in error.message
    assert f"has: {', '.join(available)}" in error.message
    assert "cpu" in error.fix
    assert error.key == "matrix.backend"
    assert error.line == line_number(text, "  backend:")


def test_an_excluded_backend_is_not_refused(scenario_file):
    """Only backends some variant really uses must exist in the wheel."""
    text = scenario_text([("backend", ["cpu", "opencl"])], "exclude:\n  - {backend: opencl}\n")
    assert [v.params["backend"] for v in variants_of(scenario_file, text)] == ["cpu"]


def test_a_huge_matrix_is_refused_at_once(scenario_file):
    """884,736 combinations: refused by counting, in well under a second, never enumerated."""
    text = scenario_text(
        [
            ("num_thread", list(range(1, 65))),
            ("threads", list(range(1, 65))),
            ("precision", ["normal", "high", "low"]),
            ("memory_mode", ["normal", "high", "low"]),
            ("power_mode", ["normal", "high", "low"]),
            ("perturb", ["none", "chaos"]),
            ("api", ["session", "module"]),
            ("inputs_written", ["every_run", "once"]),
        ]
    )
    started = time.perf_counter()
    error = refused(scenario_file, text)
    assert time.perf_counter() - started < 1.0
    assert "884,736 combinations" in error.message and error.key == "matrix"


def test_an_empty_exclude_entry_is_refused(scenario_file):
    error = refused(scenario_file, scenario_text(CROSS, "exclude:\n  - {}\n"))
    assert "empty exclude" in error.message and error.key == "exclude[0]"


# --- 7. variant ids ---


def test_default_variant_ids_are_unchanged_by_new_factors():
    assert variant_id("control", defaults()) == variant_id("control", {"api": "session"})
    assert variant_id("control", defaults()) == variant_id("control", {})
    # Pinned in test_scenario.py before the new factors existed.
    assert variant_id("demo", defaults()) == "va7aa0a7e32"
    module = variant_id("control", defaults("module"))  # input_path at the module's default
    assert module == variant_id("control", {"api": "module"}) == "v4b3b3142cb"
    assert variant_id("control", {"api": "module", "input_path": "tensor_copy"}) != module

    # The bundled control scenario's variants keep the ids they had before the new factors.
    variants = expand(load_scenario(REPO / "scenarios" / "control.yaml"))
    assert [v.variant_id for v in variants] == [
        variant_id("control", {"api": "session"}),
        variant_id("control", {"api": "module"}),
    ]
    assert all(v.params == defaults(v.params["api"]) for v in variants)


def test_non_default_new_factor_changes_the_id():
    base = variant_id("control", defaults())
    assert variant_id("control", {**defaults(), "threads": 2}) != base
    seen = {base}
    for name, factor in REGISTRY.items():
        other = next((c for c in factor.choices or () if c != factor.default), None)
        if other is None and factor.kind is str:  # mnn_version: any release number
            other = "3.4.1"
        elif other is None:
            other = 64 if factor.off else factor.default + 1
        changed = variant_id("control", {**defaults(), name: other})
        assert changed not in seen, name
        seen.add(changed)


@pytest.mark.parametrize(
    "path", ["tensor_copy", "nhwc", "nc4hw4", "host_write", "const", "numpy_array", "placeholder"]
)
def test_input_lifetimes_only_where_mnn_receives_the_array(path):
    api = "session" if path in ("tensor_copy", "nhwc", "nc4hw4", "host_write") else "module"
    found = conflicts({"api": api, "input_path": path, "input_lifetime": "freed"})
    hands_over = path in ("tensor_copy", "const", "numpy_array", "placeholder")
    assert [c.keys for c in found] == ([] if hands_over else [("input_lifetime", "input_path")])
