"""A scenario's matrix as combinations of factor values: the cartesian product, minus the
``exclude:`` entries. Combinations that make no sense (``stress.factors.conflicts``) are an
error of the scenario, found here before anything runs."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any

from stress.factors import REGISTRY, Conflict, complete, conflicts
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


def combinations(spec: Scenario) -> Iterator[dict[str, Any]]:
    """Every factor's value, for each point of the matrix not excluded (registry order)."""
    matrix = given(spec)
    exclusions = [
        {k: v for k, v in entry.model_dump().items() if v is not None} for entry in spec.exclude
    ]
    names = list(matrix)
    for values in itertools.product(*matrix.values()):
        params = complete(dict(zip(names, values, strict=True)))
        if not any(_matches(params, exclusion) for exclusion in exclusions):
            yield params


def _matches(params: dict[str, Any], exclusion: dict[str, list[Any]]) -> bool:
    return all(params[k] in values for k, values in exclusion.items())


def first_conflict(spec: Scenario) -> Conflict | None:
    """The first combination of the matrix that makes no sense, if any."""
    for params in combinations(spec):
        found = conflicts(params)
        if found:
            return found[0]
    return None
