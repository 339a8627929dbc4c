"""Matrix expansion: a scenario's factor lists become variants with stable ids.

A variant id depends only on the scenario name and the factor values that differ from their
defaults, so the same variant gets the same id in every run, whatever the matrix order, and
adding a new factor (at its default) to mnn-stress does not change old ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from stress.factors import changed, shown
from stress.factors.placement import ALL
from stress.scenario import LoadedScenario
from stress.scenario.matrix import combinations, given


@dataclass(frozen=True)
class Variant:
    """One point of a scenario's matrix: every factor has exactly one value."""

    scenario: str
    variant_id: str
    params: dict[str, Any]
    label: str


def variant_id(scenario: str, params: dict[str, Any]) -> str:
    canonical = json.dumps({"scenario": scenario, "params": changed(params)}, sort_keys=True)
    return "v" + hashlib.blake2b(canonical.encode(), digest_size=5).hexdigest()


def expand(scenario: LoadedScenario, hosts: list[str] | None = None) -> list[Variant]:
    """The matrix's combinations (``exclude:`` applied), in registry order of factors; with a
    cluster's ``hosts``, a combination whose ``node`` is ``all`` once on each of them."""
    varied = [n for n, values in given(scenario.spec).items() if len(values) > 1]
    every = list(combinations(scenario.spec))
    if hosts and any(params["node"] == ALL for params in every):
        every = [
            {**params, "node": host} if params["node"] == ALL else params
            for params in every
            for host in (hosts if params["node"] == ALL else [None])
        ]
        varied = [name for name in every[0] if name in {*varied, "node"}]  # registry order
    variants = []
    for params in every:
        vid = variant_id(scenario.spec.name, params)
        variants.append(Variant(scenario.spec.name, vid, params, label(params, varied)))
    return variants


def label(params: dict[str, Any], varied: list[str]) -> str:
    """A variant's name among its scenario's: the values of the factors its matrix varies
    (``api`` where none is varied)."""
    return " ".join(f"{n}={shown(params[n])}" for n in (varied or ["api"]))
