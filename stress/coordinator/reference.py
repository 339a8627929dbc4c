"""The reference pass: before any variant runs, each scenario's model runs in a clean, isolated
worker (Session API, one thread, inputs copied, every knob at its default, no test fault, one
worker at a time) and its outputs are kept in full under ``RUN_DIR/reference/``, as iteration
rows of the one schema. Analysis grades every variant's outputs against them.

The reference runs through the same coordinator and worker as the variants, so it survives a
crash the same way and is recorded the same way; it just writes to its own directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stress.coordinator.loop import Coordinator, Hooks, StopRequests
from stress.coordinator.plan import VariantState
from stress.factors import defaults
from stress.records.diskbudget import DiskBudget
from stress.records.manifest_sections import ReferenceEntry
from stress.records.rundir import RunLayout, next_worker_id
from stress.scenario import LoadedScenario
from stress.scenario.schema import RecordSpec

REFERENCE_ITERATIONS = 3  # more than one, so an engine unstable even when clean shows it
REFERENCE_VALUE_BYTES = 64 << 20  # an output's values are kept up to this size
REFERENCE_MAX_CRASHES = 1


def reference_id(scenario: str) -> str:
    """The reference's variant id: never a variant's (those start with ``v``)."""
    return f"reference-{scenario}"


def reference_states(scenarios: list[LoadedScenario]) -> list[VariantState]:
    """One clean single-threaded Session-API variant per scenario, storing its values."""
    from stress.scenario.variants import Variant

    states = []
    for scenario in scenarios:
        spec = scenario.spec.model_copy(
            update={
                "record": RecordSpec(max_value_bytes=REFERENCE_VALUE_BYTES),
                "max_crashes": REFERENCE_MAX_CRASHES,
                "fresh_worker_every": None,
                "workers": 1,
            }
        )
        name = spec.name
        variant = Variant(name, reference_id(name), defaults("session"), "reference")
        clean = dataclasses.replace(scenario, spec=spec)
        states.append(VariantState(variant, clean, REFERENCE_ITERATIONS, None))
    return states


def reference_coordinator(
    run_id: str,
    run_dir: Path,
    states: list[VariantState],
    stop: StopRequests,
    hooks: Hooks | None = None,
    disk: DiskBudget | None = None,
) -> Coordinator:
    """A coordinator for the references (``reference_states``, or a resumed run's), one
    worker at a time, writing into ``RUN_DIR/reference/`` (the caller runs and salvages it)."""
    root = RunLayout(run_dir).reference
    return Coordinator(
        run_id, root.root, states, 1, stop, None, hooks or Hooks(), next_worker_id(root), disk
    )


def reference_entries(states: list[VariantState]) -> dict[str, ReferenceEntry]:
    """Per scenario, for the manifest: the reference's variant id, status, iterations, deaths."""
    return {
        state.variant.scenario: ReferenceEntry(
            variant_id=state.variant.variant_id,
            status=state.status.value,
            completed=state.completed,
            crashes=state.crashes,
        )
        for state in states
    }
