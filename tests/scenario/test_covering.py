"""Covering arrays (``strategy: pairwise | 3-way``): every allowed tuple covered, nothing
disallowed generated, the same rows every time, far fewer than the full product, and the
same variant ids as the full expansion."""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Mapping
from typing import Any

import pytest
from click.testing import CliRunner

from stress.cli import main as cli
from stress.factors import complete, conflicts
from stress.scenario import Scenario, load_scenario
from stress.scenario import covering as generator
from stress.scenario.covering import CoveringError, covering_array, tuple_count
from stress.scenario.matrix import _GENERATED, covering, exclusions, given, strategy_counts
from stress.scenario.variants import expand
from tests.scenario.test_scenario import error_for

# Value lists per factor for random scenarios: chosen so that the registry's rules refuse
# some combinations (sharing and threads, sharing and api, lifecycle and sharing, misuse and
# input_path, input_path and api, inputs_written and lifecycle, caller_lock and threads).
POOL: dict[str, list[Any]] = {
    "api": ["session", "module"],
    "threads": [1, 2],
    "sharing": ["own", "interpreter", "session", "module", "clone"],
    "lifecycle": ["reuse", "session_per_iteration", "interpreter_per_iteration"],
    "inputs_written": ["every_run", "once"],
    "input_path": ["tensor_copy", "nhwc", "const", "placeholder"],
    "misuse": ["none", "missing_input", "from_numpy"],
    "caller_lock": ["none", "setup", "all"],
    "num_thread": [1, 2, 3],
    "precision": ["normal", "high", "low"],
}

# No rule links these: the full product is valid, so full and pairwise can both be loaded.
PLAIN = """
    name: plain
    model: tiny
    iterations: 5
    strategy: {strategy}
    matrix:
      api: [session, module]
      num_thread: [1, 2, 4]
      precision: [normal, high, low]
      memory_mode: [normal, low]
      malloc_perturb: [0, 85]
      ballast_mib: [0, 1]
      perturb: [none, chaos]
      power_mode: high
    exclude:
      - {{api: module, precision: high}}
    constraints:
      - {{num_thread: 4, memory_mode: low, perturb: chaos}}
"""


def _random_spec(rng: random.Random, strategy: str) -> Scenario:
    names = rng.sample(sorted(POOL), rng.randint(3, 6))
    matrix = {n: rng.sample(POOL[n], rng.randint(2, min(3, len(POOL[n])))) for n in names}
    entries = [
        {n: rng.choice(matrix[n]) for n in rng.sample(names, rng.randint(1, 2))}
        for _ in range(rng.randint(0, 3))
    ]
    split = rng.randint(0, len(entries))
    return Scenario.model_validate(
        {
            "name": "random",
            "model": "tiny",
            "strategy": strategy,
            "matrix": matrix,
            "exclude": entries[:split],
            "constraints": entries[split:],
        }
    )


def _allowed(spec: Scenario) -> list[dict[str, Any]]:
    """The full product's allowed combinations, by brute force."""
    matrix, excluded = given(spec), exclusions(spec)
    rows = [complete(dict(zip(matrix, values))) for values in itertools.product(*matrix.values())]
    return [
        row
        for row in rows
        if not conflicts(row) and not any(all(row[k] in v for k, v in e.items()) for e in excluded)
    ]


def _tuples(rows: list[Mapping[str, Any]], names: list[str], strength: int) -> set[Any]:
    return {
        tuple((n, repr(row[n])) for n in group)
        for row in rows
        for group in itertools.combinations(names, min(strength, len(names)))
    }


@pytest.mark.parametrize("strategy,strength", [("pairwise", 2), ("3-way", 3)])
def test_random_registry_matrices_cover_every_allowed_tuple(strategy, strength):
    rng = random.Random(20240611 + strength)
    for _ in range(40):
        spec = _random_spec(rng, strategy)
        varied = [n for n, values in given(spec).items() if len(values) > 1]
        allowed = _allowed(spec)
        found = covering(spec)
        rows = found.rows
        assert not [row for row in rows if conflicts(row)]
        assert all(row in allowed for row in rows), "a row the constraints refuse"
        needed = _tuples(allowed, varied, strength)
        assert needed <= _tuples(rows, varied, strength), spec.model_dump(exclude_defaults=True)
        sizes = [len(given(spec)[n]) for n in varied]
        assert found.unreachable == tuple_count(sizes, min(strength, len(sizes))) - len(needed)
        _GENERATED.clear()
        assert covering(spec) == found  # deterministic
        assert len(rows) <= len(allowed)


@pytest.mark.parametrize("strength", [2, 3])
def test_random_abstract_matrices_with_hidden_dependencies(strength):
    """Constraints that read factors conditionally (as a rule reading ``api`` through a
    default does): the generator learns what each read, never just what it declares."""
    rng = random.Random(7 + strength)
    for _ in range(60):
        levels = {f"f{i}": list(range(rng.randint(2, 4))) for i in range(rng.randint(2, 6))}
        names = list(levels)
        constraints = [_random_constraint(rng, levels) for _ in range(rng.randint(0, 4))]
        found = covering_array(levels, strength, constraints)
        product = [dict(zip(names, v)) for v in itertools.product(*levels.values())]
        allowed = [row for row in product if not any(c(row) for c in constraints)]
        assert all(row in allowed for row in found.rows)
        needed = _tuples(allowed, names, strength)
        assert needed <= _tuples(found.rows, names, strength)
        total = tuple_count([len(v) for v in levels.values()], min(strength, len(names)))
        assert found.unreachable == total - len(needed)
        assert covering_array(levels, strength, constraints) == found
        assert found.rows == sorted(found.rows, key=lambda row: [row[n] for n in names])


def _random_constraint(rng: random.Random, levels: dict[str, list[int]]):
    """``if a == x: refuse when b == y (and c == z)``: reads b and c only when a == x."""
    a, *others = rng.sample(list(levels), rng.randint(2, min(3, len(levels))))
    wanted = {n: rng.choice(levels[n]) for n in [a, *others]}
    return lambda row: row[a] == wanted[a] and all(row[n] == wanted[n] for n in others)


def test_pairwise_is_far_smaller_than_the_full_product():
    levels = {f"f{i}": list(range(3)) for i in range(10)}  # 59,049 combinations
    assert len(covering_array(levels, 2, []).rows) <= 25
    assert len(covering_array(levels, 3, []).rows) <= 90
    spec = Scenario.model_validate(
        {"name": "big", "model": "tiny", "strategy": "pairwise", "matrix": _wide_matrix()}
    )
    counts = strategy_counts(spec)
    assert counts["full"] is None  # 52,488 combinations: more than validate goes through
    assert counts["pairwise"] <= 20 and counts["3-way"] <= 80


def _wide_matrix() -> dict[str, list[Any]]:
    return {
        "api": ["session", "module"],
        "num_thread": [1, 2, 3],
        "precision": ["normal", "high", "low"],
        "memory_mode": ["normal", "high", "low"],
        "power_mode": ["normal", "high", "low"],
        "malloc_perturb": [0, 1, 2],
        "ballast_mib": [0, 1, 2],
        "cpu_hogs": [0, 1, 2],
        "perturb": ["none", "chaos"],
        "inputs_written": ["every_run", "once"],
        "output_lifetime": ["copy", "retained", "after_release"],
    }


def test_a_huge_product_is_never_enumerated():
    levels = {f"f{i}": list(range(3)) for i in range(20)}  # 3.5e9 combinations
    started = time.monotonic()
    rows = covering_array(levels, 2, []).rows
    assert time.monotonic() - started < 5
    assert 9 <= len(rows) <= 40


def test_a_pairwise_scenario_may_exceed_the_full_products_limit(scenario_file):
    text = "name: wide\nmodel: tiny\niterations: 5\nstrategy: pairwise\nmatrix:\n" + "".join(
        f"  {name}: {values}\n" for name, values in _wide_matrix().items()
    )
    variants = expand(load_scenario(scenario_file(text)))
    assert 9 <= len(variants) <= 20
    full = error_for(scenario_file, text.replace("pairwise", "full"))
    assert "crosses 52,488 combinations" in full.message
    assert "strategy: pairwise" in full.fix


def test_variant_ids_are_the_same_in_full_and_pairwise(scenario_file):
    full = expand(load_scenario(scenario_file(PLAIN.format(strategy="full"), "full.yaml")))
    pairwise = expand(load_scenario(scenario_file(PLAIN.format(strategy="pairwise"), "pw.yaml")))
    assert len(pairwise) < len(full) / 3
    by_id = {v.variant_id: v.params for v in full}
    for variant in pairwise:
        assert by_id[variant.variant_id] == variant.params
    # the order of the full listing, and the exclusions and constraints honoured
    assert [v.variant_id for v in pairwise] == [v.variant_id for v in full if v in pairwise]
    assert not [v for v in full if v.params["api"] == "module" and v.params["precision"] == "high"]


def test_rule_conflicts_are_constraints_for_covering_but_errors_for_full(scenario_file):
    text = """
        name: rules
        model: tiny
        strategy: {strategy}
        matrix:
          api: [session, module]
          threads: [1, 2]
          sharing: [own, interpreter, clone]
    """
    error = error_for(scenario_file, text.format(strategy="full"))
    assert error.key == "matrix.sharing" and "needs threads > 1" in error.message
    variants = expand(load_scenario(scenario_file(text.format(strategy="pairwise"))))
    assert {(v.params["api"], v.params["sharing"]) for v in variants} == {
        ("session", "own"),
        ("session", "interpreter"),
        ("module", "own"),
        ("module", "clone"),
    }
    assert not [v for v in variants if conflicts(v.params)]


def test_validate_variants_prints_the_count_under_every_strategy(scenario_file):
    path = scenario_file(PLAIN.format(strategy="pairwise"))
    spec = load_scenario(path).spec
    counts = strategy_counts(spec)
    done = CliRunner().invoke(cli.main, ["validate", "--variants", str(path)])
    assert done.exit_code == 0, done.output
    expected = (
        f"{counts['pairwise']} variants (full product: {counts['full']}, "
        f"pairwise: {counts['pairwise']}, 3-way: {counts['3-way']}; 1 pair of values in no "
        "allowed combination)"  # api=module with precision=high
    )
    assert expected in done.output
    assert counts["full"] == len(_allowed(spec)) == 220
    listed = re.findall(r"^    (v[0-9a-f]{10})  ", done.output, re.MULTILINE)
    assert listed == [v.variant_id for v in expand(load_scenario(path))]
    brief = CliRunner().invoke(cli.main, ["validate", str(path)])
    assert f"{counts['pairwise']} variants (pairwise)" in brief.output


def test_validate_variants_reports_tuples_no_variant_can_have(scenario_file):
    path = scenario_file(
        """
        name: rules
        model: tiny
        strategy: pairwise
        matrix:
          api: [session, module]
          threads: [1, 2]
          sharing: [own, interpreter, clone]
        """
    )
    done = CliRunner().invoke(cli.main, ["validate", "--variants", str(path)])
    assert done.exit_code == 0, done.output
    # session+clone, module+interpreter, threads=1 with interpreter and with clone
    assert "4 pairs of values in no allowed combination" in done.output


@pytest.mark.parametrize("value", ["4-way", "[pairwise]", "2", "Pairwise"])
def test_a_bad_strategy_names_the_key(scenario_file, value):
    error = error_for(scenario_file, PLAIN.format(strategy=value))
    assert error.key == "strategy" and error.line == 4
    assert "'full', 'pairwise' or '3-way'" in error.message


def test_constraints_are_checked_like_exclude(scenario_file):
    bad = PLAIN.format(strategy="pairwise").replace("{num_thread: 4,", "{thread_count: 4,")
    error = error_for(scenario_file, bad)
    assert error.key == "constraints[0].thread_count" and "unknown key" in error.message
    assert "num_thread" in error.fix
    empty = PLAIN.format(strategy="pairwise").replace(
        "{num_thread: 4, memory_mode: low, perturb: chaos}", "{}"
    )
    error = error_for(scenario_file, empty)
    assert error.key == "constraints[0]" and "empty constraints entry" in error.message
    everything = PLAIN.format(strategy="pairwise") + "      - {api: [session, module]}\n"
    error = error_for(scenario_file, everything)
    assert error.key == "constraints" and "no variant left" in error.message


def test_3way_over_the_tuple_limit_is_refused(scenario_file):
    values = list(range(40))
    text = f"""
        name: many
        model: tiny
        strategy: 3-way
        matrix:
          num_thread: {values[1:]}
          malloc_perturb: {values}
          ballast_mib: {values}
    """
    error = error_for(scenario_file, text)
    assert error.key == "strategy" and "62,400 tuples" in error.message


def test_entangled_constraints_end_in_an_error_within_seconds():
    """Random three-factor exclusions near the hardness peak of 3-SAT: a search that could
    take hours stops at MAX_CHECKS."""
    rng = random.Random(1)
    levels = {f"f{i}": [0, 1] for i in range(20)}
    clauses = [{n: rng.randint(0, 1) for n in rng.sample(list(levels), 3)} for _ in range(85)]
    constraints = [
        lambda row, clause=clause: all(row[n] == v for n, v in clause.items()) for clause in clauses
    ]
    started = time.monotonic()
    with pytest.raises(CoveringError, match="checks of constraints"):
        covering_array(levels, 2, constraints)
    assert time.monotonic() - started < 20  # about 3 s


def test_a_scenario_beyond_the_search_budget_names_its_constraints(scenario_file, monkeypatch):
    monkeypatch.setattr(generator, "MAX_CHECKS", 50)
    _GENERATED.clear()
    error = error_for(scenario_file, PLAIN.format(strategy="pairwise"))
    assert error.key == "constraints" and "checks of constraints" in error.message
