"""``mnn-stress bisect``: one variant of a scenario across released MNN versions, to find the
first version where its outcome (``stress.analysis.outcome``) changed.

Each version is one ordinary run (its own run directory, Parquet kept) of the variant with
``mnn_version`` set to it, in a cached environment made on demand. The outcome is assumed
monotone (one change across the range): both ends first, then a binary search between
them. Every version the search tested must agree with one change, else the assumption is
false and every version of the range is tested. Equal ends are reported as no change, without
testing between them (``every`` does).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stress.analysis.outcome import CONFIDENCE_RUNS, Outcome
from stress.errors import EnvError, HarnessBug, RunFailure, ScenarioError, StressError
from stress.exit_codes import ExitCode
from stress.records.states import RunStatus
from stress.scenario import LoadedScenario
from stress.scenario.variants import Variant
from stress.versions.releases import INSTALLED, is_release, version_key

# The MNN releases with a wheel for CPython 3.11 on x86_64 Linux when this was written; used
# only when pip's index cannot be asked (``released_versions``).
KNOWN_RELEASES = ("3.0.0", "3.1.0", "3.2.0", "3.4.0", "3.4.1", "3.5.0", "3.6.0", "3.6.1")

Measure = Callable[[str], Outcome]
Say = Callable[[str], None]


def by_outcome(outcome: Outcome) -> str:
    return outcome.label


def by_output(outcome: Outcome) -> str:
    """The outcome, and which output it gave most often: a change of the numbers counts."""
    return f"{outcome.label} ({outcome.output or 'no output'})"


@dataclass
class Search:
    """Versions of the range (oldest first), the outcome of each one tested, and whether
    every version was tested (the outcome was not monotone, or ``every`` was asked)."""

    versions: list[str]
    cells: dict[str, Outcome] = field(default_factory=dict)
    exhaustive: bool = False
    monotone: bool = True
    key: Callable[[Outcome], str] = by_outcome  # what must be equal for "no change"

    def changes(self) -> list[tuple[str, str, str]]:
        """(version, outcome before, outcome there) between consecutive tested versions."""
        tested = [self.key(self.cells[v]) for v in self.versions if v in self.cells]
        names = [v for v in self.versions if v in self.cells]
        return [
            (names[i], tested[i - 1], tested[i])
            for i in range(1, len(tested))
            if tested[i - 1] != tested[i]
        ]

    def untested(self) -> list[str]:
        return [v for v in self.versions if v not in self.cells]


def search(
    versions: list[str],
    measure: Measure,
    every: bool = False,
    key: Callable[[Outcome], str] = by_outcome,
) -> Search:
    """Find the first change of ``measure`` over ``versions``, testing as few as it can."""
    found = Search(list(versions), key=key)

    def label(index: int) -> str:
        version = versions[index]
        if version not in found.cells:
            found.cells[version] = measure(version)
        return key(found.cells[version])

    if every or len(versions) <= 2:
        return _every(found, label)
    low, high = 0, len(versions) - 1
    first, last = label(low), label(high)
    if first == last:
        return found
    while high - low > 1:  # low has the first outcome, high another
        middle = (low + high) // 2
        if label(middle) == first:
            low = middle
        else:
            high = middle
    after = {key(found.cells[v]) for v in versions[high:] if v in found.cells}
    if after != {last}:  # a third outcome past the change: more than one change
        found.monotone = False
        return _every(found, label)
    return found


def _every(found: Search, label: Callable[[int], str]) -> Search:
    for index in range(len(found.versions)):
        label(index)
    found.exhaustive = True
    return found


def released_versions() -> tuple[list[str], str]:
    """The MNN releases with a wheel for this Python and platform, oldest first, and where
    the list came from: pip's configured index (the truth for this machine), else the list
    known when this was written (no index reachable)."""
    command = [sys.executable, "-m", "pip", "index", "versions", "MNN"]
    try:
        done = subprocess.run(
            [*command, "--disable-pip-version-check"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        done = None
    for line in done.stdout.splitlines() if done is not None else []:
        if line.startswith("Available versions:"):
            found = [v.strip() for v in line.split(":", 1)[1].split(",")]
            releases = sorted((v for v in found if is_release(v)), key=version_key)
            if releases:
                return releases, "pip index versions MNN"
    return sorted(KNOWN_RELEASES, key=version_key), "mnn-stress's list (pip's index unreachable)"


def parse_versions(spec: str | None, released: list[str]) -> list[str]:
    """``A..B`` (the releases from A to B), ``A,B,C``, or None (every release)."""
    if spec is None:
        return list(released)
    if ".." in spec:
        start, _, end = spec.partition("..")
        bad = [v for v in (start, end) if not is_release(v)]
        chosen = [v for v in released if version_key(start) <= version_key(v) <= version_key(end)]
    else:
        chosen = [v.strip() for v in spec.split(",") if v.strip()]
        bad = [v for v in chosen if not is_release(v)]
    if bad or len(chosen) < 2:
        raise StressError(
            f"--versions {spec}: "
            + (
                f"{bad[0]!r} is not a release number"
                if bad
                else "names fewer than two released versions"
            ),
            key="--versions",
            fix=f"give A..B or A,B,C with releases such as {released[0]}..{released[-1]}",
        )
    return sorted(set(chosen), key=version_key)


def bound_note(iterations: int) -> str:
    return (
        f"each cell runs {iterations} iterations: an outcome not seen in n runs has a rate "
        f"below {CONFIDENCE_RUNS}/n (95 %), here < {CONFIDENCE_RUNS / iterations:.2g}"
    )


def write_result(found: Search, path: Path, about: dict[str, object]) -> None:
    """The table and the verdict as JSON next to the runs (``bisect.json``)."""
    changes = found.changes()
    document = {
        **about,
        "versions": found.versions,
        "exhaustive": found.exhaustive,
        "monotone": found.monotone,
        "cells": {v: {**asdict(o), "label": o.label} for v, o in found.cells.items()},
        "first_change": dict(zip(("version", "from", "to"), changes[0])) if changes else None,
        "changes": [dict(zip(("version", "from", "to"), c)) for c in changes],
    }
    path.write_text(json.dumps(document, indent=2))


@dataclass(frozen=True)
class Target:
    """The variant bisected, from its scenario's expansion."""

    scenario: LoadedScenario
    variant: Variant


def find_target(path: Path, variant_id: str) -> Target:
    """The scenario (validated) and its variant ``variant_id``; StressError when it has none."""
    from stress.coordinator.runner import load_all
    from stress.scenario.variants import expand

    scenario = load_all([path])[0]
    if scenario.spec.python is not None:
        raise ScenarioError(
            "python: chooses the workers' interpreter, and bisect chooses one per version",
            file=str(path),
            key="python",
            fix="bisect a copy of the scenario without `python:`",
        )
    variants = expand(scenario)
    for variant in variants:
        if variant.variant_id == variant_id:
            return Target(scenario, variant)
    shown = ", ".join(v.variant_id for v in variants[:6]) + (", ..." if len(variants) > 6 else "")
    raise StressError(
        f"{variant_id} is not a variant of {path} (its variants: {shown})",
        key="--variant",
        fix=f"`mnn-stress validate -v {path}` lists each variant's id and factor values",
    )


def measure_version(target: Target, version: str, iterations: int, out: Path, say: Say) -> Outcome:
    """One cell: the variant under MNN ``version`` as one run into ``out/mnn-VERSION/``."""
    from stress.analysis.outcome import HarnessFailure, classify
    from stress.coordinator.plan import Budget, VariantState
    from stress.coordinator.runner import execute_planned
    from stress.scenario.variants import variant_id
    from stress.versions import envs

    asked = version if envs.needs_env(version) else INSTALLED
    if asked != INSTALLED:
        envs.prepare(version, say)
    params = {**target.variant.params, "mnn_version": asked}
    name = target.scenario.spec.name
    variant = Variant(name, variant_id(name, params), params, f"mnn_version={version}")
    state = VariantState(variant, target.scenario, iterations, None)
    say(f"MNN {version}: {iterations} iterations ({variant.variant_id})")
    result = execute_planned(
        [target.scenario], [state], out / f"mnn-{version}", 1, Budget(iterations), reference=False
    )
    if result.status is RunStatus.INTERRUPTED:
        raise KeyboardInterrupt
    try:
        outcome = classify(result.run_dir, variant.variant_id)
    except HarnessFailure as exc:
        raise EnvError(f"MNN {version}: the worker failed in mnn-stress's code: {exc}") from exc
    if result.status is RunStatus.FAILED and not state.status.finished:
        failure = HarnessBug if result.exit_code is ExitCode.BUG else RunFailure
        raise failure(f"MNN {version}: the run failed: {result.reason}")
    if outcome.ran not in (None, version):
        raise EnvError(f"MNN {version} was asked for, but the rows say MNN {outcome.ran} ran")
    say(f"MNN {version}: {outcome.label}: {outcome.rate()}")
    return outcome


def render(found: Search, target: Target, console: Console) -> None:
    """The table measured, then the first change (or why there is none)."""
    table = Table(
        title=f"{target.scenario.spec.name} {target.variant.variant_id}: {target.variant.label}",
        title_justify="left",
    )
    for column in ("MNN", "outcome", "how often", "most frequent output", "ran"):
        table.add_column(column)
    for version in found.versions:
        cell = found.cells.get(version)
        if cell is None:
            table.add_row(version, "[dim]not tested[/]", "", "", "")
        else:
            table.add_row(version, cell.label, cell.rate(), cell.output or "-", cell.ran or "-")
    console.print(table)
    if not found.monotone:
        console.print("the tested versions disagreed with a single change: every version tested")
    console.print(_verdict(found), highlight=False)


def _verdict(found: Search) -> str:
    changes = found.changes()
    if not changes:
        untested = found.untested()
        return f"no change: {found.key(found.cells[found.versions[0]])} at every version " + (
            f"tested; {len(untested)} versions between the ends were not (--every tests them)"
            if untested
            else "tested"
        )
    version, before, after = changes[0]
    lines = [f"first version where the outcome changed: {version} (from {before} to {after})"]
    lines += [f"  then at {v}: {b} -> {a}" for v, b, a in changes[1:]]
    return "\n".join(lines)
