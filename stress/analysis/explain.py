"""Attribution for a run: which factor values explain each kind of failure, as data for the
summary and the report (the statistics are in ``stress.analysis.attribution``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from itertools import zip_longest
from typing import Any

from stress.analysis.attribution import Attribution, VariantOutcome, attribute
from stress.analysis.rates import describe
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
    factor values, the explanation and its sentence. Variants are compared within their own
    scenario: across scenarios everything may differ (model, inputs, budget), so a run of
    several says which scenarios failed, then what explains the failures in each."""
    found = {k: f for k, f in FAILED_BY.items() if any(f(v) for v in variants.values())}
    if len(found) > 1 or not found:
        found = {"any": lambda v: sum(f(v) for f in FAILED_BY.values()), **found}
    by_scenario: dict[str, list[str]] = defaultdict(list)
    for vid, entry in manifest.variants.items():
        by_scenario[entry.scenario].append(vid)
    result = {}
    for kind, failed in found.items():
        outcomes = {
            scenario: [_outcome(vid, manifest, variants[vid], failed) for vid in vids]
            for scenario, vids in by_scenario.items()
        }
        result[kind] = across_scenarios(outcomes) if len(outcomes) > 1 else _finding(_one(outcomes))
    return result


def _outcome(
    vid: str, manifest: ManifestData, variant: VariantSummary, failed: Callable[..., int]
) -> VariantOutcome:
    tried = _tried(variant)
    return VariantOutcome(
        vid, _chosen(manifest.variants[vid].params), tried, min(failed(variant), tried)
    )


def _one(outcomes: dict[str, list[VariantOutcome]]) -> Attribution:
    return attribute([outcome for found in outcomes.values() for outcome in found])


def across_scenarios(outcomes: dict[str, list[VariantOutcome]]) -> AttributionFinding:
    """Several scenarios: which failed, and each failing one's own attribution (its scores
    named ``scenario: predicate``, taken in turn from each, the worst scenario first)."""
    failures = {name: sum(o.failed for o in found) for name, found in outcomes.items()}
    failing = sorted((n for n in failures if failures[n]), key=lambda n: -failures[n])
    if not failing:
        return _finding(_one(outcomes))
    within = {name: _finding(attribute(outcomes[name])) for name in failing}
    clean = sum(o.n for name, found in outcomes.items() if name not in failing for o in found)
    where = f"scenario{'s' if len(failing) > 1 else ''} {', '.join(failing)}"
    head = f"failures only in {where} (every other scenario: {describe(0, clean)})"
    sentences = [f"within {name}: {within[name].sentence}" for name in failing]
    turns = zip_longest(*([(name, s) for s in within[name].scores] for name in failing))
    scores = [
        score.model_copy(update={"predicate": f"{name}: {score.predicate}"})
        for turn in turns
        for name, score in filter(None, turn)
    ]
    alone = within[failing[0]].explanation if len(failing) == 1 else None
    return AttributionFinding(
        sentence=f"{head if clean else f'failures in {where}'}; " + " ".join(sentences),
        explanation=f"scenario={failing[0]} and {alone}" if alone else None,
        confounded=[group for name in failing for group in within[name].confounded],
        scores=scores[:TOP_SCORES],
    )


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
