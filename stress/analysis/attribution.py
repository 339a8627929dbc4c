"""Which factor values explain the failures: statistical debugging after Liblit et al. (PLDI 2005).

Every factor value, and every pair of values that co-occur, is a predicate. Its Increase is the
failure rate of the variants with it minus that of comparable variants without it; its Importance
weighs that against the share of all failures it covers. The explanation is the smallest
conjunction true exactly for the failing variants, unless the matrix cannot tell it from another.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from stress.analysis.rates import describe, wilson
from stress.factors import shown

Term = tuple[str, Any]
FOCUS = 5  # how many top-ranked scores have their confounded factor values listed
MAX_NAMED = 4  # how many indistinguishable explanations the sentence names


@dataclass(frozen=True)
class VariantOutcome:
    """One variant's factor values (hashable) and how many of its ``n`` iterations failed."""

    variant_id: str
    params: dict[str, Any]
    n: int
    failed: int

    def __post_init__(self) -> None:
        if not 0 <= self.failed <= self.n:
            raise ValueError(f"variant {self.variant_id}: {self.failed} failed of {self.n}")


@dataclass(frozen=True)
class Predicate:
    """One factor value, or a conjunction of values of distinct factors (sorted by factor)."""

    terms: tuple[Term, ...]

    @classmethod
    def of(cls, *terms: Term) -> Predicate:
        return cls(tuple(sorted(terms, key=lambda term: term[0])))

    def __str__(self) -> str:
        return " and ".join(label(term) for term in self.terms)


def label(term: Term) -> str:
    """'threads=2', 'rlimit_as_headroom_mib=off' (a value as a scenario writes it)."""
    return f"{term[0]}={shown(term[1])}"


@dataclass(frozen=True)
class Score:
    """A predicate's variants against comparable variants without it: rates are fractions with
    95 % Wilson intervals; ``matched`` is False where no variant was comparable, so every
    variant without the predicate stands in."""

    predicate: Predicate
    variants_with: int
    n_with: int
    failed_with: int
    rate_with: float
    ci_with: tuple[float, float]
    n_without: int
    failed_without: int
    rate_without: float
    ci_without: tuple[float, float]
    matched: bool
    increase: float
    increase_low: float
    importance: float


@dataclass(frozen=True)
class Attribution:
    """Scores best first; the one conjunction that separates failing from passing variants, if
    the matrix singles one out; factor values it cannot tell apart; one sentence for a reader."""

    scores: list[Score]
    explanation: Predicate | None
    confounded: list[tuple[str, ...]]
    sentence: str


@dataclass
class _Matrix:
    """Variants with iterations as arrays: one row each, one integer code per varying factor."""

    factors: list[str]
    values: list[list[Any]]  # per factor, the value behind each code
    codes: np.ndarray  # variants × factors
    n: np.ndarray
    failed: np.ndarray
    _groups: dict[frozenset[int], np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, variants: list[VariantOutcome]) -> _Matrix:
        tried = [variant for variant in variants if variant.n > 0]
        if len({frozenset(variant.params) for variant in tried}) > 1:
            raise ValueError("variants differ in their factors: each needs a value for every one")
        names = sorted(tried[0].params) if tried else []
        columns = {name: [variant.params[name] for variant in tried] for name in names}
        factors = [name for name in names if len(set(columns[name])) > 1]
        values = [list(dict.fromkeys(columns[name])) for name in factors]
        codes = np.zeros((len(tried), len(factors)), dtype=np.int64)
        for index, name in enumerate(factors):
            codes[:, index] = [values[index].index(value) for value in columns[name]]
        n = np.array([variant.n for variant in tried], dtype=np.int64)
        failed = np.array([variant.failed for variant in tried], dtype=np.int64)
        return cls(factors, values, codes, n, failed)

    def terms(self) -> list[Term]:
        return [(name, value) for name, vals in zip(self.factors, self.values) for value in vals]

    def mask(self, predicate: Predicate) -> np.ndarray:
        selected = np.ones(len(self.n), dtype=bool)
        for name, value in predicate.terms:
            column = self.factors.index(name)
            selected &= self.codes[:, column] == self.values[column].index(value)
        return selected

    def others(self, predicate: Predicate) -> np.ndarray:
        """Per variant, a group id over the factors the predicate does not mention."""
        columns = frozenset(self.factors.index(name) for name, _ in predicate.terms)
        if columns not in self._groups:
            rest = np.delete(self.codes, sorted(columns), axis=1)
            self._groups[columns] = np.unique(rest, axis=0, return_inverse=True)[1].reshape(-1)
        return self._groups[columns]


def attribute(variants: list[VariantOutcome], max_terms: int = 3) -> Attribution:
    """Rank factor values (and co-occurring pairs) by how well they explain the failures."""
    matrix = _Matrix.of(variants)
    total_n, total_failed = int(matrix.n.sum()), int(matrix.failed.sum())
    if total_failed == 0:
        sentence = f"nothing failed in {total_n:,} iterations: {describe(0, total_n)}."
        return Attribution([], None, [], sentence)
    scores = sorted((_score(matrix, p, total_failed) for p in _candidates(matrix)), key=_rank)
    if (matrix.failed > 0).all():
        everywhere = describe(total_failed, total_n)
        sentence = f"failures in every variant: {everywhere}; no factor value explains them."
        return Attribution(scores, None, [], sentence)
    separators = _separators(matrix, max_terms)
    telling = [score.predicate for score in scores[:FOCUS] if score.importance > 0]
    confounded = _confounded(matrix, {label(t) for p in separators + telling for t in p.terms})
    either = [] if separators else _disjunctions(matrix, max_terms)
    if separators:
        sentence = _separated(matrix, separators)
    elif either:
        sentence = _either(matrix, either)
    else:
        sentence = _unexplained(scores, confounded, max_terms)
    explanation = separators[0] if len(separators) == 1 else None
    return Attribution(scores, explanation, confounded, sentence)


def _candidates(matrix: _Matrix) -> list[Predicate]:
    """Every factor value, and every pair of values that co-occur in some variant and select
    fewer variants than either value alone (otherwise the pair says nothing new)."""
    predicates = [Predicate.of(term) for term in matrix.terms()]
    for i, j in combinations(range(len(matrix.factors)), 2):
        single_i = np.bincount(matrix.codes[:, i])
        single_j = np.bincount(matrix.codes[:, j])
        pairs, together = np.unique(matrix.codes[:, [i, j]], axis=0, return_counts=True)
        for (a, b), count in zip(pairs, together):
            if count < single_i[a] and count < single_j[b]:
                first = (matrix.factors[i], matrix.values[i][a])
                predicates.append(Predicate.of(first, (matrix.factors[j], matrix.values[j][b])))
    return predicates


def _score(matrix: _Matrix, predicate: Predicate, total_failed: int) -> Score:
    selected = matrix.mask(predicate)
    without, matched = _without(matrix, predicate, selected)
    n_with, failed_with = int(matrix.n[selected].sum()), int(matrix.failed[selected].sum())
    n_without, failed_without = int(matrix.n[without].sum()), int(matrix.failed[without].sum())
    ci_with, ci_without = wilson(failed_with, n_with), wilson(failed_without, n_without)
    increase = failed_with / n_with - failed_without / n_without
    return Score(
        predicate=predicate,
        variants_with=int(selected.sum()),
        n_with=n_with,
        failed_with=failed_with,
        rate_with=failed_with / n_with,
        ci_with=ci_with,
        n_without=n_without,
        failed_without=failed_without,
        rate_without=failed_without / n_without,
        ci_without=ci_without,
        matched=matched,
        increase=increase,
        increase_low=ci_with[0] - ci_without[1],
        importance=_importance(increase, failed_with / total_failed),
    )


def _without(
    matrix: _Matrix, predicate: Predicate, selected: np.ndarray
) -> tuple[np.ndarray, bool]:
    """Variants without the predicate that equal some variant with it in every other factor
    (True); if there are none, every variant without it (False)."""
    groups = matrix.others(predicate)
    comparable = ~selected & np.isin(groups, groups[selected])
    if comparable.any():
        return comparable, True
    return ~selected, False


def _importance(increase: float, recall: float) -> float:
    """Harmonic mean of Increase and the share of failures covered; 0 unless both are positive."""
    if increase <= 0 or recall <= 0:
        return 0.0
    return 2 / (1 / increase + 1 / recall)


def _rank(score: Score) -> tuple[float, float, int, str]:
    return -score.importance, -score.increase_low, len(score.predicate.terms), str(score.predicate)


def _separators(matrix: _Matrix, max_terms: int) -> list[Predicate]:
    """The smallest conjunctions true exactly in the failing variants. Each term must hold in
    every failing variant, so at most one value per factor qualifies: the search stays small.
    Two such conjunctions select the same variants, so the matrix cannot tell them apart."""
    failing = matrix.failed > 0
    shared = [term for term in matrix.terms() if matrix.mask(Predicate.of(term))[failing].all()]
    for size in range(1, max_terms + 1):
        conjunctions = [Predicate.of(*terms) for terms in combinations(shared, size)]
        found = [p for p in conjunctions if np.array_equal(matrix.mask(p), failing)]
        if found:
            return sorted(found, key=str)
    return []


def _confounded(matrix: _Matrix, focus: set[str]) -> list[tuple[str, ...]]:
    """Groups of factor values true in exactly the same variants, where one is in ``focus``."""
    groups: dict[bytes, list[str]] = defaultdict(list)
    for term in matrix.terms():
        groups[matrix.mask(Predicate.of(term)).tobytes()].append(label(term))
    return [
        tuple(sorted(group)) for group in groups.values() if len(group) > 1 and focus & set(group)
    ]


def _disjunctions(matrix: _Matrix, max_terms: int) -> list[tuple[Term, ...]]:
    """Where no conjunction separates: the smallest sets of factor values, each true only in
    failing variants, that together hold in every failing one ("A or B"); none if none does.
    Two such sets select the same variants, so the matrix cannot tell them apart."""
    failing = matrix.failed > 0
    masks = {term: matrix.mask(Predicate.of(term)) for term in matrix.terms()}
    only_failing = [term for term, mask in masks.items() if not (mask & ~failing).any()]
    largest = max_terms if len(only_failing) <= _MAX_ALTERNATIVES else 2
    for size in range(2, largest + 1):
        found = [
            terms
            for terms in combinations(only_failing, size)
            if np.array_equal(np.logical_or.reduce([masks[term] for term in terms]), failing)
        ]
        if found:
            return found
    return []


_MAX_ALTERNATIVES = 40  # more values true only where it fails: look for pairs alone


def _counts(matrix: _Matrix) -> str:
    """The failing variants' failures, and what the others rule out."""
    failing = matrix.failed > 0
    with_them = describe(int(matrix.failed.sum()), int(matrix.n[failing].sum()))
    return f"{with_them}; every other variant: {describe(0, int(matrix.n[~failing].sum()))}"


def _separated(matrix: _Matrix, separators: list[Predicate]) -> str:
    counts = _counts(matrix)
    if len(separators) == 1:
        return f"failures only with {separators[0]}: {counts}."
    named = " or ".join(f"({p})" if len(p.terms) > 1 else str(p) for p in separators[:MAX_NAMED])
    more = f" or {len(separators) - MAX_NAMED} others" if len(separators) > MAX_NAMED else ""
    return (
        f"failures only with {named}{more}: {counts}. These cannot be separated: they always "
        "occur together in this matrix, so the run cannot tell which."
    )


def _either(matrix: _Matrix, alternatives: list[tuple[Term, ...]]) -> str:
    first = " or ".join(label(term) for term in alternatives[0])
    text = f"failures only with {first}: {_counts(matrix)}."
    if len(alternatives) > 1:
        text += (
            f" {len(alternatives) - 1} other choice(s) of values select the same variants "
            "(the matrix cannot tell them apart)."
        )
    return text


def _unexplained(scores: list[Score], confounded: list[tuple[str, ...]], max_terms: int) -> str:
    head = f"no conjunction of up to {max_terms} factor values separates the failing variants"
    if not scores:
        return f"{head}: no factor varies."
    top = scores[0]
    without = "comparable variants" if top.matched else "all variants"
    text = (
        f"{head}; most telling: {top.predicate}, with it {describe(top.failed_with, top.n_with)}, "
        f"{without} without it {describe(top.failed_without, top.n_without)}"
    )
    for term in map(label, top.predicate.terms):
        partners = [other for group in confounded if term in group for other in group]
        if len(partners) > 1:
            together = " or ".join(other for other in partners if other != term)
            text += f"; {term} cannot be separated from {together} (they always occur together)"
    return text + "."
