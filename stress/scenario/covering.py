"""Covering arrays: a few rows of a matrix in which every t values of t different factors
(t = 2: pairwise, t = 3: 3-way) appear together at least once, within the constraints.

Our own greedy generator (AETG-like, deterministic), because a library that filters rows
after choosing them (allpairspy) silently loses tuples under constraints. Each row starts
from the first uncovered tuple and is completed by a depth-first search that picks, factor by
factor, the value covering most new tuples, checking the constraints on partial rows with
forward checking. A tuple is dropped as unreachable only when that search proves that no
allowed row contains it. Cost, without backtracking: per row, factors^2 x values constraint
checks and factors^(t-1) x values tuple look-ups; at most one row per tuple; never the size
of the full product. Backtracking is bounded by MAX_CHECKS.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STRENGTHS = {"pairwise": 2, "3-way": 3}
MAX_TUPLES = 50_000  # tuples to cover; 20 factors x 3 values, 3-way, need 30,780
MAX_CHECKS = 2_000_000  # constraint checks of one generation: a few seconds at most

# True when a row is not allowed. It reads the row's values from the mapping (factor ->
# value, only the factors with several values), and must depend on nothing else: the checker
# records what it read, to judge partial rows and to remember the answer.
Constraint = Callable[[Mapping[str, Any]], bool]
ValueTuple = tuple[tuple[int, ...], tuple[int, ...]]  # (factor positions, level indices)


class CoveringError(ValueError):
    """The constraints need more than MAX_CHECKS checks to decide which rows are allowed."""


@dataclass(frozen=True)
class Covering:
    """A covering array, and what the constraints kept out of it."""

    rows: list[dict[str, Any]]  # factor -> value, in the full product's order
    unreachable: int  # t-tuples that no allowed row contains


def tuple_count(sizes: Sequence[int], strength: int) -> int:
    """How many t-tuples ``sizes`` (values per factor) have, computed, not enumerated."""
    counts = [1] + [0] * strength
    for size in sizes:
        for t in range(strength, 0, -1):
            counts[t] += counts[t - 1] * size
    return counts[strength]


def covering_array(
    levels: Mapping[str, Sequence[Any]], strength: int, constraints: Sequence[Constraint]
) -> Covering:
    """Allowed rows covering every t-tuple of ``levels`` that some allowed row contains
    (with fewer factors than t: every allowed row). Same input, same rows."""
    names, values = list(levels), [list(v) for v in levels.values()]
    search = _Search(_Checker(names, values, constraints), [len(v) for v in values], strength)
    rows, unreachable = search.run()
    rows.sort()
    return Covering(
        [{n: values[p][i] for p, (n, i) in enumerate(zip(names, row))} for row in rows],
        unreachable,
    )


class _Unchosen(BaseException):
    """A constraint read a factor that the partial row has not chosen yet. Not an Exception,
    so that a constraint's own ``except Exception`` cannot take it for an answer."""


class _Reads(Mapping[str, Any]):
    """A partial row's values as a constraint reads them, recording which factors it read;
    reading one not chosen yet stops the constraint (membership is not a read: every row
    has the same factors)."""

    def __init__(self, checker: _Checker, row: dict[int, int]) -> None:
        self.checker, self.row = checker, row
        self.read: set[int] = set()

    def __getitem__(self, key: str) -> Any:
        position = self.checker.positions[key]
        if position not in self.row:
            raise _Unchosen
        self.read.add(position)
        return self.checker.values[position][self.row[position]]

    def __contains__(self, key: object) -> bool:
        return key in self.checker.positions

    def __iter__(self) -> Iterator[str]:
        return iter(self.checker.positions)

    def __len__(self) -> int:
        return len(self.checker.positions)


class _Checker:
    """Whether a partial row (position -> level index) breaks a constraint for certain. A
    constraint that read only chosen factors has its answer, which holds for every row with
    the same values of those factors, so it is remembered."""

    def __init__(self, names: list[str], values: list[list[Any]], constraints: Sequence[Any]):
        self.positions = {name: position for position, name in enumerate(names)}
        self.values, self.constraints = values, list(constraints)
        # Per constraint: for each set of factors it read, its answer per their levels.
        self.known: list[dict[frozenset[int], dict[tuple[int, ...], bool]]] = [
            {} for _ in self.constraints
        ]
        self.checks = 0
        # A constraint that reads no factor and allows a row allows every row: left out.
        self.active = [i for i in range(len(self.constraints)) if self._unless_constant(i)]

    def _unless_constant(self, index: int) -> bool:
        return self._breaks(index, {}) or frozenset() not in self.known[index]

    def violated(self, row: dict[int, int]) -> bool:
        self.checks += len(self.active)
        if self.checks > MAX_CHECKS:
            raise CoveringError(f"no answer after {MAX_CHECKS:,} checks of constraints")
        return any(self._breaks(i, row) for i in self.active)

    def _breaks(self, index: int, row: dict[int, int]) -> bool:
        known = self.known[index]
        for read, answers in known.items():
            if row.keys() >= read:
                answer = answers.get(tuple(map(row.__getitem__, sorted(read))))
                if answer is not None:
                    return answer
        view = _Reads(self, row)
        try:
            broken = bool(self.constraints[index](view))
        except _Unchosen:
            return False  # it depends on factors not chosen yet
        read = frozenset(view.read)
        known.setdefault(read, {})[tuple(map(row.__getitem__, sorted(read)))] = broken
        return broken


class _Search:
    """The greedy row-by-row construction."""

    def __init__(self, checker: _Checker, sizes: list[int], strength: int) -> None:
        self.checker, self.sizes = checker, sizes
        self.strength = min(strength, len(sizes))
        self.groups = list(itertools.combinations(range(len(sizes)), self.strength))
        self.uncovered: set[ValueTuple] = set()
        self.remaining = [[0] * size for size in sizes]  # uncovered tuples with that level

    def run(self) -> tuple[list[list[int]], int]:
        """The rows, and how many tuples no allowed row contains."""
        order = [
            (group, combo)
            for group in self.groups
            for combo in itertools.product(*(range(self.sizes[p]) for p in group))
        ]
        if self._row({}) is None:
            return [], len(order)  # no allowed row at all: found once, not once per tuple
        self.uncovered = set()
        self._mark(order, +1)
        rows: list[list[int]] = []
        unreachable = 0
        for seed in order:
            if seed not in self.uncovered:
                continue
            row = self._row(dict(zip(*seed)))
            if row is None:
                self._mark([seed], -1)
                unreachable += 1
                continue
            rows.append(row)
            covered = [(group, tuple(row[p] for p in group)) for group in self.groups]
            self._mark([t for t in covered if t in self.uncovered], -1)
        return rows, unreachable

    def _mark(self, tuples: Sequence[ValueTuple], change: int) -> None:
        """Add (+1) or remove (-1) uncovered tuples, counting them per level."""
        for group, combo in tuples:
            for position, level in zip(group, combo):
                self.remaining[position][level] += change
        if change > 0:
            self.uncovered.update(tuples)
        else:
            self.uncovered.difference_update(tuples)

    def _row(self, seed: dict[int, int]) -> list[int] | None:
        """An allowed row containing ``seed``, or None when there is none."""
        if self.checker.violated(seed):
            return None
        free = {p: range(size) for p, size in enumerate(self.sizes) if p not in seed}
        domains = self._narrowed(seed, free)
        return None if domains is None else self._extend(seed, domains)

    def _narrowed(
        self, row: dict[int, int], domains: Mapping[int, Sequence[int]]
    ) -> dict[int, list[int]] | None:
        """The levels of each free factor that the constraints allow next to ``row``; None as
        soon as one factor has none left (forward checking)."""
        narrowed = {}
        for position, levels in domains.items():
            allowed = [v for v in levels if not self.checker.violated({**row, position: v})]
            if not allowed:
                return None
            narrowed[position] = allowed
        return narrowed

    def _extend(self, row: dict[int, int], domains: dict[int, list[int]]) -> list[int] | None:
        """Depth first: the factor with fewest allowed levels next, its best level first."""
        if not domains:
            return [row[p] for p in range(len(self.sizes))]
        position = min(domains, key=lambda p: (len(domains[p]), p))
        rest = {p: levels for p, levels in domains.items() if p != position}
        for level in self._ranked(row, position, domains[position]):
            row[position] = level
            narrowed = self._narrowed(row, rest)
            found = None if narrowed is None else self._extend(row, narrowed)
            if found is not None:
                return found
            del row[position]
        return None

    def _ranked(self, row: dict[int, int], position: int, levels: list[int]) -> list[int]:
        """Most new tuples first, then the level in most uncovered tuples, then the first."""
        partners = list(itertools.combinations(sorted(row), self.strength - 1))

        def gain(level: int) -> int:
            candidate = {**row, position: level}
            return sum(self._tuple(candidate, (*p, position)) in self.uncovered for p in partners)

        return sorted(levels, key=lambda v: (-gain(v), -self.remaining[position][v], v))

    @staticmethod
    def _tuple(row: dict[int, int], positions: tuple[int, ...]) -> ValueTuple:
        group = tuple(sorted(positions))
        return group, tuple(row[p] for p in group)
