"""One run, start to end: validate every scenario, plan the variants, make the run directory,
run the coordinator, keep the manifest up to date."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from stress import faults
from stress.coordinator import Coordinator, VariantState
from stress.errors import RunDirError, ScenarioError
from stress.manifest import Manifest, host_info, now_iso, versions
from stress.scenario import LoadedScenario, load_scenario
from stress.variants import expand

MIN_SHARE_S = 1.0


@dataclass(frozen=True)
class Budget:
    """Command-line overrides: iterations per variant, or a total duration for the whole run."""

    iterations: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    completed: bool
    states: list[VariantState]


def load_all(paths: list[Path]) -> list[LoadedScenario]:
    """Validate every file before anything runs; scenario names must be unique."""
    loaded = [load_scenario(p) for p in paths]
    seen: dict[str, Path] = {}
    for scenario in loaded:
        name = scenario.spec.name
        if name in seen:
            raise ScenarioError(
                f"scenario name {name!r} is also used by {seen[name]}",
                file=str(scenario.path),
                key="name",
                fix="give each scenario a unique name",
            )
        seen[name] = scenario.path
    return loaded


def plan(scenarios: list[LoadedScenario], budget: Budget, concurrency: int) -> list[VariantState]:
    """One state per variant with its budget: the command line's, else the scenario's."""
    expanded = {s.spec.name: expand(s) for s in scenarios}
    variants = [(s, v) for s in scenarios for v in expanded[s.spec.name]]
    share = None
    if budget.duration_s is not None:  # the whole run's time, shared fairly by all variants
        usable = sum(
            min(s.spec.workers or concurrency, len(expanded[s.spec.name])) for s in scenarios
        )
        parallelism = max(1, min(concurrency, usable))  # each scenario's own cap counts
        share = max(MIN_SHARE_S, budget.duration_s * parallelism / len(variants))
    states = []
    for scenario, variant in variants:
        spec = scenario.spec
        iterations = budget.iterations or (None if share or spec.duration else spec.iterations)
        duration = share if share is not None else (None if budget.iterations else spec.duration)
        states.append(VariantState(variant, scenario, iterations, duration))
    return states


def make_run_dir(out: Path | None) -> tuple[str, Path]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{secrets.token_hex(3)}"
    run_dir = out if out is not None else Path("results") / run_id
    if (run_dir / "manifest.json").exists():
        raise RunDirError(f"{run_dir} already holds a run", fix="choose a new --out directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"cannot create {run_dir}: {exc.strerror}", fix="choose a writable --out directory"
        ) from exc
    return run_id, run_dir


@dataclass(frozen=True)
class Hooks:
    """What the caller hears during a run (the CLI prints it; tests may ignore it)."""

    on_start: Callable[[Path, list[VariantState]], None] | None = None
    on_change: Callable[[VariantState], None] | None = None
    on_tick: Callable[[list[VariantState], float], None] | None = None


def execute(
    paths: list[Path], out: Path | None, workers: int | None, budget: Budget, hooks: Hooks = Hooks()
) -> RunResult:
    """Validate everything, then run; the manifest follows every variant's state."""
    scenarios = load_all(paths)
    concurrency = workers or os.cpu_count() or 1
    states = plan(scenarios, budget, concurrency)
    fault = os.environ.get(faults.ENV_VAR) or None
    faults.parse(fault)
    run_id, run_dir = make_run_dir(out)
    manifest = new_manifest(run_id, run_dir, scenarios, concurrency, budget, fault)

    def record(state: VariantState) -> None:
        manifest.data["variants"][state.variant.variant_id] = variant_entry(state)

    def changed(state: VariantState) -> None:
        record(state)
        manifest.save()
        if hooks.on_change:
            hooks.on_change(state)

    for state in states:
        record(state)
    manifest.save()
    if hooks.on_start:
        hooks.on_start(run_dir, states)
    coordinator = Coordinator(run_id, run_dir, states, concurrency, fault, changed, hooks.on_tick)
    completed = coordinator.run()
    manifest.data.update(ended=now_iso(), status="complete" if completed else "interrupted")
    for state in states:
        record(state)
    manifest.save()
    return RunResult(run_dir, completed, states)


def new_manifest(
    run_id: str,
    run_dir: Path,
    scenarios: list[LoadedScenario],
    concurrency: int,
    budget: Budget,
    fault: str | None,
) -> Manifest:
    return Manifest(
        run_dir,
        {
            "run_id": run_id,
            "command": sys.argv,
            "cwd": os.getcwd(),
            "started": now_iso(),
            "ended": None,
            "status": "running",
            "concurrency": concurrency,
            "budget": {"iterations": budget.iterations, "duration_s": budget.duration_s},
            "test_fault": fault,
            "host": host_info(),
            "versions": versions(),
            "scenarios": [
                {
                    "name": s.spec.name,
                    "path": str(s.path),
                    "text": s.text,
                    "model": s.model.to_dict(),
                }
                for s in scenarios
            ],
            "variants": {},
        },
    )


def variant_entry(state: VariantState) -> dict:
    return {
        "scenario": state.variant.scenario,
        "label": state.variant.label,
        "params": state.variant.params,
        "status": state.status,
        "completed": state.completed,
        "crashes": state.crashes,
        "next_iteration": state.next_iteration,
        "stop_iteration": state.stop_iteration,
        "duration_s": state.duration_s,
        "workers_started": state.workers_started,
    }
