"""A scenario's matrix as combinations of factor values. ``strategy: full`` is the cartesian
product minus the ``exclude:`` and ``constraints:`` entries; a combination that makes no sense
(``stress.factors.conflicts``) is an error of the scenario, found before anything runs.
``pairwise`` and ``3-way`` are covering arrays (``stress.scenario.covering``) generated within
those entries and the factors' rules, so they never hold such a combination."""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stress.factors import REGISTRY, complete, conflicts
from stress.factors.factor import Conflict, Rule
from stress.scenario.covering import (
    MAX_TUPLES,
    STRENGTHS,
    Constraint,
    Covering,
    CoveringError,
    covering_array,
    tuple_count,
)
from stress.scenario.schema import Scenario

MAX_COMBINATIONS = 20_000  # a matrix's product before exclusions; more is a typo, not a plan


def given(spec: Scenario) -> dict[str, list[Any]]:
    """The matrix's value lists, registry order; factors left to their API's default are
    absent."""
    matrix = spec.matrix.model_dump()
    return {name: matrix[name] for name in REGISTRY if matrix[name] is not None}


def size(spec: Scenario) -> int:
    """The number of combinations before exclusions (computed, not enumerated)."""
    return math.prod(len(values) for values in given(spec).values())


def exclusions(spec: Scenario) -> list[dict[str, list[Any]]]:
    """The ``exclude:`` and ``constraints:`` entries, which mean the same: factor -> values."""
    return [
        {k: v for k, v in entry.model_dump().items() if v is not None}
        for entry in (*spec.exclude, *spec.constraints)
    ]


def combinations(spec: Scenario) -> Iterator[dict[str, Any]]:
    """Every factor's value (registry order), for each combination the scenario's
    ``strategy`` picks, in the full product's order."""
    if spec.strategy == "full":
        return _product(spec)
    return iter(covering(spec).rows)


def _product(spec: Scenario) -> Iterator[dict[str, Any]]:
    matrix = given(spec)
    excluded = exclusions(spec)
    names = list(matrix)
    for values in itertools.product(*matrix.values()):
        params = complete(dict(zip(names, values, strict=True)))
        if not any(_matches(params, exclusion) for exclusion in excluded):
            yield params


def _matches(params: Mapping[str, Any], exclusion: dict[str, list[Any]]) -> bool:
    return all(params[k] in values for k, values in exclusion.items())


def first_conflict(spec: Scenario) -> Conflict | None:
    """The first combination of the matrix that makes no sense, if any."""
    for params in combinations(spec):
        found = conflicts(params)
        if found:
            return found[0]
    return None


def allowed_count(spec: Scenario) -> int | None:
    """How many combinations of the full product no entry excludes and no rule refuses; None
    when the product is too large to go through (over MAX_COMBINATIONS)."""
    if size(spec) > MAX_COMBINATIONS:
        return None
    return sum(1 for params in _product(spec) if not conflicts(params))


def tuples(spec: Scenario, strategy: str) -> int:
    """How many t-tuples of factor values a covering ``strategy`` has to consider."""
    sizes = [len(values) for values in given(spec).values() if len(values) > 1]
    return tuple_count(sizes, min(STRENGTHS[strategy], len(sizes)))


# Loading, expanding and validating ask for the same arrays: each is generated once.
_GENERATED: dict[str, Covering] = {}


def covering(spec: Scenario, strategy: str | None = None) -> Covering:
    """The covering array for ``strategy`` (default: the scenario's), rows completed with every
    factor. The entries and the factors' rules constrain it; CoveringError when they need too
    much search."""
    strategy = strategy or spec.strategy
    key = json.dumps([strategy, given(spec), exclusions(spec)], sort_keys=True, default=repr)
    if key not in _GENERATED:
        if len(_GENERATED) >= 32:
            _GENERATED.clear()
        _GENERATED[key] = _generate(spec, STRENGTHS[strategy])
    found = _GENERATED[key]
    return Covering([dict(row) for row in found.rows], found.unreachable)


def _generate(spec: Scenario, strength: int) -> Covering:
    matrix = given(spec)
    varied = {n: values for n, values in matrix.items() if len(values) > 1}
    fixed = {n: values[0] for n, values in matrix.items() if len(values) == 1}
    checks = [functools.partial(_matches, exclusion=e) for e in exclusions(spec)]
    checks += [functools.partial(_breaks, rule=r) for f in REGISTRY.values() for r in f.rules]
    found = covering_array(varied, strength, [_on(fixed, check) for check in checks])
    return Covering([complete({**fixed, **row}) for row in found.rows], found.unreachable)


def covering_size(spec: Scenario, strategy: str) -> int | None:
    """The number of variants ``strategy`` would give; None when it is over the limits."""
    if tuples(spec, strategy) > MAX_TUPLES:
        return None
    try:
        return len(covering(spec, strategy).rows)
    except CoveringError:
        return None


def _breaks(params: Mapping[str, Any], rule: Rule) -> bool:
    return rule.check(params) is not None


def _on(fixed: dict[str, Any], check: Callable[[Mapping[str, Any]], bool]) -> Constraint:
    """A check of complete params as a constraint on the covering generator's rows."""
    return lambda row: check(_Completed(fixed, row))


class _Completed(Mapping[str, Any]):
    """``complete(fixed | row)`` worked out key by key as it is read, so that a check reads
    only the factors it looks at (the covering generator records which)."""

    def __init__(self, fixed: dict[str, Any], row: Mapping[str, Any]) -> None:
        self.fixed, self.row = fixed, row

    def __getitem__(self, key: str) -> Any:
        if key in self.row:
            return self.row[key]
        if key in self.fixed:
            return self.fixed[key]
        return REGISTRY[key].default_for(self)

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


def strategy_counts(spec: Scenario) -> dict[str, int | None]:
    """Variants each strategy gives: ``full`` counts the allowed combinations (None: too many
    to go through), a covering strategy gives None when over its limits."""
    return {"full": allowed_count(spec), **{s: covering_size(spec, s) for s in STRENGTHS}}
