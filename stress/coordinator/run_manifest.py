"""What a run writes into its manifest: the first version (``new_manifest``), a segment per
coordinator, each variant's entry, and the sections that change once or twice during a run
(``disk``, ``adaptive``, ``pauses``), saved as they change."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from stress.coordinator.plan import RunSetup, VariantState
from stress.coordinator.reference import reference_entries, reference_states
from stress.errors import StorageError
from stress.factors.convert import NONE as NO_FLAGS
from stress.models.source import source_of
from stress.records.damage import set_aside_in
from stress.records.manifest import (
    MODEL_SOURCE,
    Manifest,
    ManifestData,
    Pause,
    VariantEntry,
    host_info,
    now_iso,
    versions,
)
from stress.records.manifest_sections import AdaptiveSection, NodeEntry, Segment
from stress.records.nodes import fingerprint
from stress.records.rundir import Owner, RunLayout
from stress.records.states import RunStatus


def new_manifest(setup: RunSetup) -> ManifestData:
    budget = setup.budget
    return ManifestData(
        run_id=setup.run_id,
        command=sys.argv,
        cwd=os.getcwd(),
        started=now_iso(),
        ended=None,
        status=RunStatus.RUNNING,
        reason=None,
        concurrency=setup.concurrency,
        budget={"iterations": budget.iterations, "duration_s": budget.duration_s},
        adaptive=AdaptiveSection(pool_s=round(setup.pool_s, 3) if setup.pool_s else None),
        test_fault=setup.fault,
        owner=Owner.current().to_dict(),
        host=host_info(),
        nodes=[fingerprint()],
        versions=versions(),
        reference=reference_entries(reference_states(setup.scenarios)) if setup.reference else {},
        segments=[new_segment()],
        scenarios=[
            {
                "name": s.spec.name,
                "description": s.spec.description,
                "path": str(s.path),
                "text": s.text,
                "model": s.model.to_dict(),
                MODEL_SOURCE: source_of(s.model, [NO_FLAGS, *s.converted]).to_dict(),
                "tolerance": s.spec.tolerance.model_dump(exclude_none=True),
            }
            for s in setup.scenarios
        ],
    )


def new_segment() -> Segment:
    """The manifest's record of one coordinator's part of a run (``run --resume`` adds one)."""
    return Segment(
        started=now_iso(),
        ended=None,
        status=RunStatus.RUNNING,
        reason=None,
        owner=Owner.current().to_dict(),
        command=sys.argv,
    )


def variant_entry(state: VariantState) -> VariantEntry:
    return VariantEntry(
        scenario=state.variant.scenario,
        label=state.variant.label,
        params=state.variant.params,
        status=state.status,
        completed=state.completed,
        crashes=state.crashes,
        next_iterations=list(state.next_iterations),
        stop_iteration=state.stop_iteration,
        duration_s=state.duration_s,
        workers_started=state.workers_started,
        used_s=round(state.used_so_far(), 3),
    )


def record_states(manifest: Manifest, states: list[VariantState]) -> None:
    """Every variant's current state into the manifest (saved by the caller)."""
    for state in states:
        manifest.data.variants[state.variant.variant_id] = variant_entry(state)


def record_damaged(manifest: Manifest) -> None:
    """Every part set aside as damaged so far (by compaction or ``run --resume``) into the
    manifest's ``damaged`` list (saved by the caller)."""
    run_dir = manifest.path.parent
    manifest.data.damaged = [
        part
        for directory in RunLayout(run_dir).all_datasets()
        for part in set_aside_in(directory, run_dir)
    ]


def section_recorder(manifest: Manifest, section: str) -> Callable[[dict[str, Any]], None]:
    """Changes to one section of the manifest (``disk``, ``adaptive``), saved at once: each
    happens once or twice a run. Times (floats) become ISO text."""

    def record(change: dict[str, Any]) -> None:
        getattr(manifest.data, section).update({key: _iso(v) for key, v in change.items()})
        with contextlib.suppress(StorageError):  # the end of the run tries again
            manifest.save()

    return record


def _iso(seconds: object) -> object:
    if not isinstance(seconds, float):
        return seconds
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def pause_recorder(manifest: Manifest) -> Callable[[float, float], None]:
    """Each pause of the coordinator (when it began, seconds since the epoch; how long),
    into ``pauses`` and saved at once: a pause is rare, and the run may not end well."""

    def record(began: float, seconds: float) -> None:
        manifest.data.pauses.append(Pause(str(_iso(began)), round(seconds, 1)))
        with contextlib.suppress(StorageError):  # the end of the run tries again
            manifest.save()

    return record


def record_node(manifest: Manifest, node: NodeEntry) -> None:
    """List ``node`` among the machines the run's rows came from (a resumed run may go on on
    another machine), or update its entry (a cluster's node: its Ray id, its loss)."""
    nodes = manifest.data.nodes
    known = [k for k, entry in enumerate(nodes) if entry.host == node.host]
    if known:
        nodes[known[0]] = node
    else:
        nodes.append(node)


def node_recorder(manifest: Manifest) -> Callable[[NodeEntry], None]:
    """Nodes of a cluster run into the manifest as they start or are lost, saved at once (a
    driver killed later leaves them listed for ``--resume`` and the readers)."""

    def record(node: NodeEntry) -> None:
        record_node(manifest, node)
        with contextlib.suppress(StorageError):  # the end of the run tries again
            manifest.save()

    return record
