"""Attribution for a run: which factor values explain each kind of failure, as data for the
summary and the report (the statistics are in ``stress.analysis.attribution``)."""

from __future__ import annotations

from typing import Any

from stress.analysis.attribution import Attribution, VariantOutcome, attribute
from stress.analysis.counts import death_count
from stress.factors import REGISTRY
from stress.records.manifest import ManifestData

# What fails an iteration, per kind: graded outcomes, worker deaths, memcheck errors.
FAILURE_GRADES = ("mismatch", "non_finite", "invalid", "error")
TOP_SCORES = 10


def attribution(manifest: ManifestData, per_variant: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per failure kind that occurred (and for all of them together, ``any``): the ranked
    factor values, the explanation and its sentence. The scenario counts as a factor."""
    kinds = {kind: _failed_by(kind) for kind in (*FAILURE_GRADES, "death", "memcheck")}
    found = {k: f for k, f in kinds.items() if any(f(v) for v in per_variant.values())}
    if len(found) > 1 or not found:
        found = {"any": lambda v: sum(f(v) for f in kinds.values()), **found}
    result = {}
    for kind, failed in found.items():
        outcomes = [
            VariantOutcome(
                vid,
                {"scenario": entry.scenario, **_chosen(entry.params)},
                _tried(per_variant[vid]),
                min(failed(per_variant[vid]), _tried(per_variant[vid])),
            )
            for vid, entry in manifest.variants.items()
        ]
        result[kind] = _as_dict(attribute(outcomes))
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


def _failed_by(kind: str):
    if kind == "death":
        return death_count
    if kind == "memcheck":  # distinct invalid accesses valgrind saw
        return lambda v: v["events"].get("memcheck", 0)
    return lambda v: v["grades"][kind]


def _tried(variant: dict[str, Any]) -> int:
    """Iterations tried: completed ones plus one per death (each cost its iteration)."""
    return variant["iterations"] + death_count(variant)


def _as_dict(found: Attribution) -> dict[str, Any]:
    return {
        "sentence": found.sentence,
        "explanation": None if found.explanation is None else str(found.explanation),
        "confounded": [list(group) for group in found.confounded],
        "scores": [
            {
                "predicate": str(score.predicate),
                "with": f"{score.failed_with:,} of {score.n_with:,}",
                "failed_with": score.failed_with,
                "n_with": score.n_with,
                "failed_without": score.failed_without,
                "n_without": score.n_without,
                "rate_with": score.rate_with,
                "ci_with": list(score.ci_with),
                "without": f"{score.failed_without:,} of {score.n_without:,}",
                "rate_without": score.rate_without,
                "ci_without": list(score.ci_without),
                "matched": score.matched,
                "increase": score.increase,
                "increase_low": score.increase_low,
                "increase_high": score.ci_with[1] - score.ci_without[0],
                "importance": score.importance,
            }
            for score in found.scores[:TOP_SCORES]
        ],
    }
