"""Where an interrupted or killed run really stood, read from what reached the disk.

The journal may be a second ahead of the rows (or behind them) when the coordinator was
killed, so a resumed variant goes on from its recorded rows and events: per thread, after the
last iteration with a row or lost in flight with a dead worker. Iterations whose rows were
still in the dead coordinator's buffer are run again, under the same numbers: no gap and no
duplicate per (variant, thread).
"""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stress.analysis.dataset import events_table
from stress.analysis.scan import Scan
from stress.coordinator.loop import StopRequests
from stress.coordinator.plan import Budget, RunSetup, VariantState, plan
from stress.coordinator.reference import reference_states
from stress.coordinator.run_manifest import new_segment, record_damaged
from stress.coordinator.runner import (
    RunHooks,
    RunResult,
    check_file_size_limit,
    run_in,
    stop_signals,
)
from stress.coordinator.workers import forensics
from stress.errors import ModelError, RunDirError
from stress.factors.placement import ANY
from stress.models.source import ModelSource, changes, source_now
from stress.records.compaction import set_aside_damaged, tidy
from stress.records.damage import DamagedPart
from stress.records.events import DEATH_KINDS
from stress.records.manifest import (
    MODEL_SOURCE,
    Manifest,
    ManifestData,
    VariantEntry,
    read_manifest,
)
from stress.records.manifest_sections import ReferenceEntry
from stress.records.rundir import Owner, RunDir, RunLayout, next_worker_id
from stress.records.states import RunStatus, VariantStatus
from stress.scenario import load_scenario


@dataclass
class Recorded:
    """A variant as its rows and events tell it."""

    next_iterations: dict[int, int] = field(default_factory=dict)  # thread -> next iteration
    completed: int = 0  # iterations with a row
    deaths: int = 0


def recorded(root: RunLayout) -> dict[str, Recorded]:
    """Per variant id, from the iterations and events of ``root`` (a run directory, or its
    reference pass)."""
    found: dict[str, Recorded] = collections.defaultdict(Recorded)
    with Scan(root.iterations) as scan:
        rows = scan.table(
            "SELECT variant_id, thread, max(iteration) AS last, "
            "count(DISTINCT iteration) AS iterations FROM fetched GROUP BY variant_id, thread"
        )
    for row in rows.to_pylist():
        variant = found[row["variant_id"]]
        variant.next_iterations[row["thread"]] = row["last"] + 1
        variant.completed += row["iterations"]
    events = events_table(root.root, columns=["variant_id", "kind", "in_flight"])
    for event in events.to_pylist():
        if event["kind"] not in DEATH_KINDS:
            continue
        variant = found[event["variant_id"]]
        variant.deaths += 1
        for thread, iteration in enumerate(event["in_flight"] or []):
            if iteration is not None:  # lost with its worker: the variant went past it
                after = max(variant.next_iterations.get(thread, 0), iteration + 1)
                variant.next_iterations[thread] = after
    return dict(found)


def carry_over(
    states: list[VariantState], entries: dict[str, VariantEntry], on_disk: dict[str, Recorded]
) -> None:
    """Put each planned state where the run left it: a finished variant stays finished (and
    is not run again); any other goes on from its recorded iterations, with its loop time.
    Either way its iterations are numbered on from its rows on disk: a variant the manifest
    says is done may have lost its last rows with a killed coordinator, and an adaptive
    second pass that went on from the manifest's count would leave a gap."""
    for state in states:
        entry = entries[state.variant.variant_id]
        state.workers_started = entry.workers_started
        state.duration_s = entry.duration_s  # an adaptive night's first pass, or more
        if entry.status.finished:
            state.status, state.crashes, state.used_s = entry.status, entry.crashes, entry.used_s
            got = on_disk.get(state.variant.variant_id, Recorded())
            state.next_iterations = _on_disk(got, len(entry.next_iterations))
            state.completed = got.completed
        else:
            _go_on(state, on_disk, entry.used_s, entry.crashes)


def _on_disk(got: Recorded, threads: int) -> list[int]:
    """Each thread's next iteration after its rows on disk."""
    return [got.next_iterations.get(t, 0) for t in range(threads)]


def carry_over_references(
    states: list[VariantState], entries: dict[str, ReferenceEntry], on_disk: dict[str, Recorded]
) -> None:
    """The same for the reference pass, whose manifest entries are per scenario. A finished
    reference whose rows were lost (a damaged part) runs again: three iterations, without
    which the whole run is ungraded."""
    for state in states:
        entry = entries.get(state.variant.scenario)
        status = VariantStatus(entry.status) if entry is not None else VariantStatus.PENDING
        got = on_disk.get(state.variant.variant_id, Recorded())
        if entry is not None and status.finished and got.completed >= entry.completed:
            state.status, state.completed, state.crashes = status, entry.completed, entry.crashes
        else:
            _go_on(state, on_disk, 0.0, entry.crashes if entry is not None else 0)


def _go_on(state: VariantState, on_disk: dict[str, Recorded], used_s: float, crashes: int) -> None:
    """From the rows and events on disk; deaths as many as the run counted when some have
    no event (lost with a killed coordinator): the crash budget is not handed back."""
    got = on_disk.get(state.variant.variant_id, Recorded())
    state.next_iterations = _on_disk(got, len(state.next_iterations))
    state.completed, state.used_s = got.completed, used_s
    state.crashes = max(got.deaths, crashes)
    state.status = VariantStatus.DONE if state.exhausted() else VariantStatus.PENDING


def resume(
    run_dir_path: Path, workers: int | None, hooks: RunHooks, max_disk: int | None = None
) -> RunResult:
    """Go on with an interrupted, failed or killed run, in its directory and under its run
    id: its scenarios as they were when it began, its budget, the variants not finished."""
    stop = StopRequests()
    with stop_signals(stop):
        run_dir = RunDir.reopen(run_dir_path)
        try:
            manifest, setup, references, unchecked = _resumed(run_dir.path, workers)
            aside = _set_aside_damaged(manifest)  # after _resumed read every part
            roots = (run_dir.layout, run_dir.layout.reference)
            stale_cores = forensics.remove_stale_cores(*(root.cores for root in roots))
            setup = dataclasses.replace(setup, max_disk=max_disk)
            check_file_size_limit(setup.scenarios)
            rerun = manifest.data.segments[-1].iterations_rerun
            lost = manifest.data.segments[-1].iterations_lost

            def started(path: Path, states: list[VariantState]) -> None:
                hooks.on_start(path, states)
                if unchecked:
                    hooks.on_note(
                        f"warning: this run recorded no model digests (an older mnn-stress): "
                        f"cannot check that the models of {', '.join(unchecked)} are unchanged"
                    )
                for part in aside:
                    hooks.on_note(f"resume set aside a damaged part: {part.describe()}")
                if stale_cores:
                    hooks.on_note(
                        f"deleted {stale_cores} core file(s) the killed coordinator left unread "
                        "(their deaths' events say gdb was reading them)"
                    )
                if rerun:
                    hooks.on_note(
                        f"{rerun} iterations the previous coordinator had seen never reached "
                        "the disk (it was killed): they run again, under the same numbers"
                    )
                if lost:
                    hooks.on_note(
                        f"{lost} iterations of variants already done never reached the disk "
                        "(the previous coordinator was killed): they are not run again"
                    )

            told = dataclasses.replace(hooks, on_start=started)
            return run_in(setup, run_dir, stop, told, manifest, references)
        finally:
            run_dir.close()


def _set_aside_damaged(manifest: Manifest) -> list[DamagedPart]:
    """The damaged parts (those reading the rows found too) moved into ``damaged/``, where
    no reader looks and new parts are numbered past them; the manifest's ``damaged`` list
    brought up to date. Returns those moved now."""
    run_dir = manifest.path.parent
    try:
        datasets = RunLayout(run_dir).all_datasets()
        moved = [part for d in datasets for part in set_aside_damaged(d, run_dir)]
    except OSError as exc:
        raise RunDirError(
            f"cannot set a damaged part aside: {exc.strerror or exc}",
            file=str(exc.filename or run_dir),
            fix="make the run directory writable, or move the damaged part out by hand",
        ) from exc
    record_damaged(manifest)
    return moved


def _resumed(
    path: Path, workers: int | None
) -> tuple[Manifest, RunSetup, list[VariantState], list[str]]:
    data = read_manifest(path)
    if data.status is RunStatus.COMPLETE:
        raise RunDirError(f"{path} is complete: nothing is left to resume", fix="start a new run")
    unchecked = check_models(data)
    scenarios = [load_scenario(_scenario_path(data, s), text=s["text"]) for s in data.scenarios]
    budget = Budget(data.budget["iterations"], data.budget["duration_s"])
    hosts = [node.host for node in data.nodes if node.ray_node_id] or None  # `node: all`
    states = plan(scenarios, budget, data.concurrency, hosts)
    placed = sorted({s.variant.params["node"] for s in states} - {ANY})
    if placed:
        raise RunDirError(
            f"{path}: its variants were placed on cluster nodes (node: {', '.join(placed)}); "
            "--resume goes on on this machine alone",
            fix="start a new run with --ray",
        )
    if {s.variant.variant_id for s in states} != set(data.variants):
        raise RunDirError(
            f"{path}: its scenarios no longer expand to the variants it ran",
            fix="resume it with the mnn-stress version that started it",
        )
    layout = RunLayout(path)
    for dataset in layout.all_datasets():
        tidy(dataset)
    carry_over(states, data.variants, recorded(layout))
    entries = [data.variants[state.variant.variant_id] for state in states]
    rerun = sum(_rerun(state, entry) for state, entry in zip(states, entries, strict=True))
    lost = sum(_lost(state, entry) for state, entry in zip(states, entries, strict=True))
    references = reference_states(scenarios) if data.reference else []
    carry_over_references(references, data.reference, recorded(layout.reference))
    _new_segment(data)
    data.segments[-1].iterations_rerun = rerun
    data.segments[-1].iterations_lost = lost or None
    concurrency = workers or data.concurrency
    setup = RunSetup(
        data.run_id,
        scenarios,
        states,
        concurrency,
        budget,
        data.test_fault,
        reference=bool(data.reference),
        first_worker_id=next_worker_id(RunLayout(path)),
    )
    return Manifest(path, data), setup, references, unchecked


def check_models(data: ManifestData) -> list[str]:
    """Before anything is loaded or run: ModelError when a scenario's model is not the one
    the run began with (its content, what made it, its converter flags), naming the scenario,
    the file and what changed. Returns the scenarios whose run recorded no model (older
    versions of mnn-stress): those cannot be checked."""
    unchecked = []
    for scenario in data.scenarios:
        if MODEL_SOURCE not in scenario:
            unchecked.append(scenario["name"])
            continue
        recorded = ModelSource.from_dict(scenario[MODEL_SOURCE])
        try:
            now = source_now(recorded, _scenario_path(data, scenario).parent)
        except ModelError as exc:
            found = [f"it cannot be read now: {exc.message}"]
        else:
            found = changes(recorded, now)
        if found:
            raise ModelError(
                f"scenario {scenario['name']!r}: its model is not the one this run began with: "
                + "; ".join(found),
                file=recorded.file,
                fix="put the original model back to resume this run, or start a new run with "
                "the new model (one run never mixes two models)",
            )
    return unchecked


def _rerun(state: VariantState, entry: VariantEntry) -> int:
    """Iterations the journal saw done that have no row, lost with a killed coordinator, of a
    variant that goes on (run again under the same numbers)."""
    return 0 if state.status.finished else _unwritten(state, entry)


def _lost(state: VariantState, entry: VariantEntry) -> int:
    """The same of a variant already done: not run again."""
    return _unwritten(state, entry) if state.status.finished else 0


def _unwritten(state: VariantState, entry: VariantEntry) -> int:
    return sum(
        max(0, seen - kept) for seen, kept in zip(entry.next_iterations, state.next_iterations)
    )


def _scenario_path(data: ManifestData, scenario: dict[str, Any]) -> Path:
    """Where the scenario was (a relative model path in it is relative to that folder)."""
    path = Path(scenario["path"])
    return path if path.is_absolute() else Path(data.cwd) / path


def _new_segment(data: ManifestData) -> None:
    """The earlier segment's end, as far as it is known, then a new one for this coordinator."""
    if data.segments and data.segments[-1].status is RunStatus.RUNNING:
        data.segments[-1].status = RunStatus.KILLED  # its coordinator never said
    data.status, data.reason, data.ended = RunStatus.RUNNING, None, None
    data.owner = Owner.current().to_dict()
    data.segments.append(new_segment())
