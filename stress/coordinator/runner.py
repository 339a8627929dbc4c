"""One run, start to end: validate every scenario, plan the variants, take the run directory,
run the coordinator, and leave a manifest and journal that say how the run ended."""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from stress.bug_report import harness_bug
from stress.coordinator.adaptive import second_pass, split_first_pass
from stress.coordinator.cluster import placement
from stress.coordinator.cluster.connect import connected
from stress.coordinator.cluster.driver import ClusterCoordinator
from stress.coordinator.cluster.slots import ClusterRun, slots
from stress.coordinator.jobs import check_record_fits, ring_capacity
from stress.coordinator.live import grading_rows
from stress.coordinator.loop import Coordinator, Hooks, StopRequests
from stress.coordinator.onnx_reference import run_onnxruntime
from stress.coordinator.plan import (
    Budget,
    RunSetup,
    VariantState,
    overridden_budgets,
    plan,
)
from stress.coordinator.reference import reference_coordinator, reference_entries, reference_states
from stress.coordinator.run_manifest import (
    new_manifest,
    node_recorder,
    pause_recorder,
    record_damaged,
    record_node,
    record_states,
    section_recorder,
    variant_entry,
)
from stress.errors import RunFailure, ScenarioError, StorageError, StressError
from stress.exit_codes import ExitCode
from stress.records.diskbudget import DiskBudget, disk_usage
from stress.records.journal import Journal
from stress.records.manifest import Manifest, now_iso
from stress.records.manifest_sections import ReferenceEntry
from stress.records.nodes import fingerprint
from stress.records.rundir import RunDir
from stress.records.states import RunStatus, VariantStatus
from stress.scenario import LoadedScenario, load_scenario
from stress.worker import faults


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: RunStatus
    reason: str | None
    states: list[VariantState]
    exit_code: ExitCode  # what ``mnn-stress run`` exits with


def load_all(paths: list[Path]) -> list[LoadedScenario]:
    """Validate every file before anything runs; scenario names must be unique."""
    loaded = [load_scenario(p) for p in paths]
    for scenario in loaded:
        check_record_fits(scenario)
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


def check_file_size_limit(scenarios: list[LoadedScenario]) -> None:
    """Worker rings are memfd files, so ``ulimit -f`` caps them: raise the soft limit to the
    hard one if needed, or refuse before anything runs."""
    needed = max(ring_capacity(s) for s in scenarios) + 4096
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        return
    raise StressError(
        f"the file-size limit (ulimit -f) is {soft >> 10} KiB; worker rings alone need "
        f"{needed >> 20} MiB, and result files grow larger",
        fix="run `ulimit -f unlimited` (or a limit of a few GiB) before mnn-stress",
    )


@contextmanager
def stop_signals(stop: StopRequests) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal) become stop requests for the whole
    run, final writes included, so no signal can leave the manifest half-done."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, stop.request) for s in handled}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@dataclass(frozen=True)
class RunHooks:
    """What the CLI hears: the start, every state change, and a tick every few seconds."""

    on_start: Callable[[Path, list[VariantState]], None] = lambda run_dir, states: None
    on_change: Callable[[VariantState], None] = lambda state: None
    on_tick: Callable[[list[VariantState], float], None] = lambda states, elapsed: None
    on_reference: Callable[[dict[str, ReferenceEntry]], None] = lambda entries: None
    on_note: Callable[[str], None] = lambda line: None


def execute(
    paths: list[Path],
    out: Path | None,
    workers: int | None,
    budget: Budget,
    hooks: RunHooks = RunHooks(),
    reference: bool = True,
    max_disk: int | None = None,
    adaptive: bool = True,
    cluster: str | None = None,
) -> RunResult:
    """Validate everything, then run (on the nodes of the Ray cluster at the address
    ``cluster``, if given: ``workers`` is then per node, None for each node's CPUs). State
    changes go to the journal; the manifest is written at the start and at the end, whatever
    ends the run."""
    scenarios = load_all(paths)
    overridden = overridden_budgets(scenarios, budget)
    if overridden:
        hooks.on_note(overridden)
    if cluster is None:
        concurrency = workers or os.cpu_count() or 1
        states = plan(scenarios, budget, concurrency)
        placement.check(states, None)
        pool = split_first_pass(states) if adaptive else 0.0
        return execute_planned(
            scenarios, states, out, concurrency, budget, hooks, reference, max_disk, pool
        )
    with connected(cluster, workers) as ray:  # its nodes decide the plan
        on = ClusterRun(ray, slots(ray, workers))
        concurrency = sum(slot.capacity for slot in on.slots)
        states = plan(scenarios, budget, concurrency, on.hosts)
        placement.check(states, on.slots)
        return execute_planned(
            scenarios, states, out, concurrency, budget, hooks, reference, max_disk, 0.0, on
        )


def execute_planned(
    scenarios: list[LoadedScenario],
    states: list[VariantState],
    out: Path | None,
    concurrency: int,
    budget: Budget,
    hooks: RunHooks = RunHooks(),
    reference: bool = True,
    max_disk: int | None = None,
    pool_s: float = 0.0,
    cluster: ClusterRun | None = None,
) -> RunResult:
    """Run variants planned by the caller (``execute``'s, or ``bisect``'s own: one variant
    under one MNN version) into a new run directory."""
    fault = os.environ.get(faults.ENV_VAR) or None
    faults.parse(fault)
    setup = RunSetup(
        new_run_id(), scenarios, states, concurrency, budget, fault, reference, 0, max_disk, pool_s,
        cluster,
    )  # fmt: skip
    check_file_size_limit(scenarios)
    stop = StopRequests()
    with stop_signals(stop):
        run_dir = RunDir.create(out if out is not None else Path("results") / setup.run_id)
        try:
            manifest = Manifest(run_dir.path, new_manifest(setup))
            references = reference_states(scenarios) if reference else []
            return run_in(setup, run_dir, stop, hooks, manifest, references)
        finally:
            run_dir.close()


def run_in(
    setup: RunSetup,
    run_dir: RunDir,
    stop: StopRequests,
    hooks: RunHooks,
    manifest: Manifest,
    references: list[VariantState],
) -> RunResult:
    """Run ``setup`` in ``run_dir`` (new, or resumed): the references not finished yet
    first, then the variants not finished yet. A bug of ours anywhere in it still leaves the
    manifest and journal saying the run failed, and why (HarnessBug)."""
    record_node(manifest, fingerprint())  # a resumed run may go on on another machine
    record_states(manifest, setup.states)
    manifest.save()
    journal = Journal(run_dir.path)
    try:
        return _run_all(setup, run_dir, stop, hooks, manifest, references, journal)
    except StressError:
        raise
    except Exception as exc:
        bug = harness_bug(exc, "the run failed", run_dir.path)
        with contextlib.suppress(Exception):  # best effort: our code is what just failed
            _finish(manifest, journal, setup.states, bug, 0, run_dir)
        raise bug from exc


def _run_all(
    setup: RunSetup,
    run_dir: RunDir,
    stop: StopRequests,
    hooks: RunHooks,
    manifest: Manifest,
    references: list[VariantState],
    journal: Journal,
) -> RunResult:
    states = setup.states
    journal.run(RunStatus.RUNNING.value, None)  # a resumed run's last word is no longer the last
    hooks.on_start(run_dir.path, states)
    disk = None
    if setup.max_disk:
        disk = DiskBudget(run_dir.path, setup.max_disk, run_dir.release_reserve)
    if disk is not None:
        manifest.data.disk.budget_bytes = disk.limit
    on_disk = section_recorder(manifest, "disk")
    if any(not state.status.finished for state in references):
        failure, lost_rows = _run_reference(
            setup, references, run_dir, stop, manifest, hooks, disk, on_disk
        )
        if failure is not None:  # nothing could be written: the variants cannot run either
            for state in states:
                state.status = VariantStatus.SKIPPED
            return _finish(manifest, journal, states, failure, lost_rows, run_dir, disk)

    def changed(state: VariantState) -> None:
        journal.variant(state.variant.variant_id, variant_entry(state).to_dict())
        hooks.on_change(state)

    def progress(running: list[VariantState]) -> None:
        for state in running:
            journal.variant(
                state.variant.variant_id,
                {
                    "completed": state.completed,
                    "next_iterations": state.next_iterations,
                    "used_s": round(state.used_so_far(), 3),
                },
            )

    told = Hooks(
        changed,
        progress,
        hooks.on_tick,
        hooks.on_note,
        on_disk,
        _pass_done(manifest, hooks),
        on_pause=pause_recorder(manifest),
        on_rows=grading_rows(run_dir.path, manifest.data.scenarios, states, hooks.on_note),
    )
    if setup.cluster is not None:
        coordinator = _drive_cluster(setup, setup.cluster, run_dir, stop, told, manifest)
    else:
        coordinator = Coordinator(
            setup.run_id,
            run_dir.path,
            states,
            setup.concurrency,
            stop,
            setup.fault,
            told,
            setup.first_worker_id,
            disk,
        )
        _drive(coordinator, run_dir)
    failure, lost_rows = coordinator.failure, coordinator.lost_rows
    return _finish(manifest, journal, states, failure, lost_rows, run_dir, disk)


def _drive_cluster(
    setup: RunSetup,
    cluster: ClusterRun,
    run_dir: RunDir,
    stop: StopRequests,
    hooks: Hooks,
    manifest: Manifest,
) -> ClusterCoordinator:
    """The variants over the nodes of the Ray cluster, each node listed in the manifest."""
    coordinator = ClusterCoordinator(
        cluster,
        setup.run_id,
        run_dir.path,
        setup.states,
        stop,
        setup.fault,
        hooks,
        setup.first_worker_id,
        node_recorder(manifest),
    )
    _drive(coordinator, run_dir)
    return coordinator


def _pass_done(
    manifest: Manifest, hooks: RunHooks
) -> Callable[[list[VariantState]], list[VariantState]]:
    """The second pass of an adaptive night, unless it has been given already (resumed)."""
    adaptive = manifest.data.adaptive
    if not adaptive.pool_s or adaptive.allocated_at is not None:
        return lambda states: []
    parallelism = manifest.data.concurrency
    record = section_recorder(manifest, "adaptive")
    return second_pass(adaptive.pool_s, parallelism, hooks.on_note, record)


def _run_reference(
    setup: RunSetup,
    states: list[VariantState],
    run_dir: RunDir,
    stop: StopRequests,
    manifest: Manifest,
    hooks: RunHooks,
    disk: DiskBudget | None,
    on_disk: Callable[[dict[str, object]], None],
) -> tuple[RunFailure | None, int]:
    """Every scenario's clean reference, before the variants; recorded in the manifest."""
    told = Hooks(on_note=hooks.on_note, on_disk=on_disk, on_pause=pause_recorder(manifest))
    coordinator = reference_coordinator(setup.run_id, run_dir.path, states, stop, told, disk)
    _drive(coordinator, run_dir)
    manifest.data.reference = reference_entries(coordinator.states)
    if coordinator.failure is None and not stop.count:
        for name, status in run_onnxruntime(run_dir.path, setup.scenarios).items():
            manifest.data.reference[name].onnxruntime = status
    with contextlib.suppress(StorageError):  # the end of the run tries again
        manifest.save()
    hooks.on_reference(manifest.data.reference)
    return coordinator.failure, coordinator.lost_rows


def _finish(
    manifest: Manifest,
    journal: Journal,
    states: list[VariantState],
    failure: RunFailure | None,
    lost_rows: int,
    run_dir: RunDir,
    disk: DiskBudget | None = None,
) -> RunResult:
    stopped_by = disk.stopped if disk is not None else None
    status, reason, exit_code = outcome(states, failure, lost_rows, stopped_by)
    if disk is not None:
        manifest.data.disk.used_bytes = disk_usage(run_dir.path)
    manifest.data.status, manifest.data.reason, manifest.data.ended = status, reason, now_iso()
    segment = manifest.data.segments[-1]
    segment.ended, segment.status, segment.reason = manifest.data.ended, status, reason
    record_states(manifest, states)
    record_damaged(manifest)
    _finish_files(journal, manifest, status, reason)
    return RunResult(run_dir.path, status, reason, states, exit_code)


def _drive(coordinator: Coordinator | ClusterCoordinator, run_dir: RunDir) -> None:
    """Run the loop, then salvage what is buffered (the reserve makes room if the disk is
    full). A bug in the coordinator itself becomes the run's failure (HarnessBug: its
    traceback in a file in the run directory), instead of a run left marked as running."""
    try:
        coordinator.run()
    except Exception as exc:
        bug = harness_bug(exc, "the coordinator failed", run_dir.path)
        coordinator.failure = coordinator.failure or bug
    try:
        coordinator.lost_rows = coordinator.salvage(run_dir.release_reserve)
    except Exception as exc:  # the buffer itself may be what failed
        bug = harness_bug(exc, "writing the last rows failed", run_dir.path)
        coordinator.failure = coordinator.failure or bug
        coordinator.lost_rows = len(coordinator.buffer)
    if coordinator.failure is None:  # a full disk has no room for merged copies
        coordinator.compact_all()


def _finish_files(journal: Journal, manifest: Manifest, status: RunStatus, reason: str | None):
    """The journal's last line first (small: it fits when little else does), then the
    manifest. A disk too full even for these leaves the journal's last known states."""
    with contextlib.suppress(StorageError):
        journal.run(status.value, reason)
    with contextlib.suppress(StorageError):
        manifest.save()
    journal.close()


class RunEnding(NamedTuple):
    """How a run ended, why, and what ``mnn-stress run`` exits with."""

    status: RunStatus
    reason: str | None
    exit_code: ExitCode


def outcome(
    states: list[VariantState],
    failure: RunFailure | None,
    lost_rows: int,
    stopped_by: str | None = None,
) -> RunEnding:
    """How the run ended, why and its exit status, first match wins: the failure that stopped
    it, a worker's harness error (our bug), a stop (``stopped_by``: why the run itself stopped
    early, if it did); a run in which nothing ran is never complete."""
    if failure is not None:
        lost = f"; {lost_rows} rows could not be written" if lost_rows else ""
        return RunEnding(RunStatus.FAILED, failure.render() + lost, failure.exit_code)
    harness = [s for s in states if s.status is VariantStatus.FAILED]
    if harness:
        why = (
            f"mnn-stress's own code failed in {len(harness)} variant(s) (a harness bug, not a "
            "finding about MNN): see the 'harness' events"
        )
        return RunEnding(RunStatus.FAILED, why, ExitCode.BUG)
    stopped = (VariantStatus.INTERRUPTED, VariantStatus.SKIPPED)
    if any(s.status in stopped for s in states):
        why = stopped_by or "stopped by a signal (Ctrl-C, SIGTERM or SIGHUP)"
        return RunEnding(RunStatus.INTERRUPTED, why, ExitCode.INTERRUPTED)
    if not any(s.completed for s in states):
        why = "no iteration completed in any variant: see the events"
        return RunEnding(RunStatus.FAILED, why, ExitCode.RUN_FAILED)
    return RunEnding(RunStatus.COMPLETE, None, ExitCode.OK)


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"
