"""Attribution for a run: which factor values explain each kind of failure, as data for the
summary and the report (the statistics are in ``stress.analysis.attribution``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stress.analysis.attribution import Attribution, VariantOutcome, attribute
from stress.analysis.summary_model import AttributionFinding, FactorScore, VariantSummary
from stress.factors import REGISTRY
from stress.records.manifest import ManifestData

# What fails an iteration, per kind: graded outcomes, worker deaths, memcheck errors.
FAILED_BY: dict[str, Callable[[VariantSummary], int]] = {
    "mismatch": lambda v: v.grades.mismatch,
    "non_finite": lambda v: v.grades.non_finite,
    "invalid": lambda v: v.grades.invalid,
    "error": lambda v: v.grades.error,
    "death": lambda v: v.deaths,
    "memcheck": lambda v: v.events.memcheck,  # distinct invalid accesses valgrind saw
}
TOP_SCORES = 10


def attribution(
    manifest: ManifestData, variants: dict[str, VariantSummary]
) -> dict[str, AttributionFinding]:
    """Per failure kind that occurred (and for all of them together, ``any``): the ranked
    factor values, the explanation and its sentence. The scenario counts as a factor."""
    found = {k: f for k, f in FAILED_BY.items() if any(f(v) for v in variants.values())}
    if len(found) > 1 or not found:
        found = {"any": lambda v: sum(f(v) for f in FAILED_BY.values()), **found}
    result = {}
    for kind, failed in found.items():
        outcomes = [
            VariantOutcome(
                vid,
                {"scenario": entry.scenario, **_chosen(entry.params)},
                _tried(variants[vid]),
                min(failed(variants[vid]), _tried(variants[vid])),
            )
            for vid, entry in manifest.variants.items()
        ]
        result[kind] = _finding(attribute(outcomes))
    return result


def _chosen(params: dict[str, Any]) -> dict[str, Any]:
    """Factor values as the scenario chose them: a factor with a default per API that is at
    its API's default reads ``default`` (else it would always move with ``api`` and be
    blamed with it)."""
    return {
        name: "default"
        if name in REGISTRY
        and REGISTRY[name].per_api is not None
        and value == REGISTRY[name].default_for(params)
        else value
        for name, value in params.items()
    }


def _tried(variant: VariantSummary) -> int:
    """Iterations tried: completed ones plus one per death (each cost its iteration)."""
    return variant.iterations + variant.deaths


def _finding(found: Attribution) -> AttributionFinding:
    return AttributionFinding(
        sentence=found.sentence,
        explanation=None if found.explanation is None else str(found.explanation),
        confounded=[list(group) for group in found.confounded],
        scores=[
            FactorScore(
                predicate=str(score.predicate),
                with_=f"{score.failed_with:,} of {score.n_with:,}",
                failed_with=score.failed_with,
                n_with=score.n_with,
                failed_without=score.failed_without,
                n_without=score.n_without,
                rate_with=score.rate_with,
                ci_with=score.ci_with,
                without=f"{score.failed_without:,} of {score.n_without:,}",
                rate_without=score.rate_without,
                ci_without=score.ci_without,
                matched=score.matched,
                increase=score.increase,
                increase_low=score.increase_low,
                increase_high=score.ci_with[1] - score.ci_without[0],
                importance=score.importance,
            )
            for score in found.scores[:TOP_SCORES]
        ],
    )
