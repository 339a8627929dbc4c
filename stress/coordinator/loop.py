"""The coordinator: runs variants in worker processes, watches them, survives their deaths.

One loop, one thread: start workers up to the concurrency limit, drain their rings into the
row buffer, turn every death (signal, non-zero exit, exception, hang) into an event, start a
replacement that continues the variant until its crash budget is spent, and stop cleanly when
asked (a second request kills at once) or when results can no longer be written. No worker
outlives the loop.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil
import pyarrow as pa

from stress.coordinator.jobs import make_job, ring_capacity, ring_for_records, ring_refusal
from stress.coordinator.plan import VariantState
from stress.coordinator.progress import count_batch, count_record
from stress.coordinator.workers import deaths, forensics
from stress.coordinator.workers.deaths import KillReason
from stress.coordinator.workers.handle import WorkerProcess
from stress.errors import RunFailure, StorageError
from stress.records.diskbudget import DiskBudget
from stress.records.events import Event, EventKind, native_stack_of
from stress.records.iteration_batch import IterationBatch
from stress.records.nodes import hostname
from stress.records.recorder import Listeners, Recorder
from stress.records.rundir import RunLayout
from stress.records.schema import RowContext
from stress.records.states import VariantStatus

STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
# The loop drains every ring about this often: records then arrive in runs long enough to be
# decoded as columns (draining as fast as possible cost a core, a few records at a time), and
# an idle coordinator sleeps. A ring found over a quarter full is drained again at once.
ROUND_S = 0.02
TICK_S = 1.0
PROGRESS_S = 1.0
MEMORY_SAMPLE_S = 0.2  # the system's available memory, into every row received meanwhile
COMPACT_S = 2.0  # how often to look for parts to merge
# A loop that did not run for this long, beyond the CPU it used meanwhile, was paused (SIGSTOP,
# Ctrl-Z, a debugger, or starved of CPU or disk): 250 rounds, beyond any scheduling delay of a
# runnable process even on a crowded host, while its own slow work (a merge, a flush) uses CPU
# and is not counted. Its workers go on meanwhile: their budgets are measured in the worker.
PAUSE_S = 5.0


class StopRequests:
    """Counts requests to stop (Ctrl-C, SIGTERM, a failure): the first stops workers
    gracefully, a second kills them at once."""

    def __init__(self) -> None:
        self.count = 0

    def request(self, *_: object) -> None:
        self.count += 1


@dataclass
class RunningWorker:
    process: WorkerProcess
    state: VariantState
    context: RowContext | None = None
    thread_progress: dict[int, float] = field(default_factory=dict)  # thread -> last record


@dataclass(frozen=True)
class Hooks:
    """What the caller hears during a run: state changes, progress every PROGRESS_S for the
    running variants (the journal), and a tick with every state every TICK_S (the view)."""

    on_change: Callable[[VariantState], None] = lambda state: None
    on_progress: Callable[[list[VariantState]], None] = lambda states: None
    on_tick: Callable[[list[VariantState], float], None] = lambda states, elapsed: None
    on_note: Callable[[str], None] = lambda line: None  # a line for the run's log
    on_disk: Callable[[dict[str, object]], None] = lambda record: None  # for the manifest
    # Once every variant has run: those to run again, their budgets raised (adaptive nights)
    on_pass_done: Callable[[list[VariantState]], list[VariantState]] = lambda states: []
    on_pause: Callable[[float, float], None] = lambda began, seconds: None  # for the manifest
    on_rows: Callable[[pa.Table], None] = lambda rows: None  # each part's rows, as written


class Feed(Protocol):
    """Variants handed to a coordinator while it runs (a cluster node's share, given as its
    workers free up): up to ``count`` more, and whether more may come."""

    def take(self, count: int) -> list[VariantState]: ...

    def open(self) -> bool: ...


@dataclass(frozen=True)
class Site:
    """Where a coordinator runs: the ``host`` its rows and events name, the ``feed`` of
    variants beyond those it starts with (a cluster node's), and whether it packs its parts
    (a node's are shipped to the driver as written)."""

    host: str = field(default_factory=hostname)
    feed: Feed | None = None
    compacting: bool = True


class Coordinator:
    def __init__(
        self,
        run_id: str,
        run_dir: Path,
        states: list[VariantState],
        concurrency: int,
        stop: StopRequests,
        fault: str | None = None,
        hooks: Hooks = Hooks(),
        first_worker_id: int = 0,
        disk: DiskBudget | None = None,
        site: Site | None = None,
    ) -> None:
        self.run_id = run_id
        self.site = site = site or Site()
        self.run_dir = run_dir
        self.layout = RunLayout(run_dir)
        self.states = states
        self.concurrency = max(1, concurrency)
        self.stop = stop
        self.fault = fault
        self.hooks = hooks
        listeners = Listeners(self._note, self._on_disk, stop.request, hooks.on_rows)
        self.recorder = Recorder(
            run_dir,
            listeners,
            disk,
            stopping=lambda: bool(stop.count),
            host=site.host,
            compacting=site.compacting,
        )
        self.buffer = self.recorder.buffer
        self.queues: dict[str, collections.deque[VariantState]] = {}
        for state in states:
            queue = self.queues.setdefault(state.variant.scenario, collections.deque())
            if not state.status.finished:  # a resumed run's finished variants are not rerun
                queue.append(state)
        self.in_use: collections.Counter[str] = collections.Counter()
        self.running: dict[int, RunningWorker] = {}
        self.next_worker_id = first_worker_id
        self.stop_deadline: float | None = None
        self.failure: RunFailure | None = None
        self.lost_rows = 0  # rows that could not be written, even by salvage()
        self.round_at, self.round_cpu = 0.0, 0.0  # the loop's last round: monotonic, CPU time
        # Death events waiting for gdb to read their worker's core (written once it has)
        self.stacks: forensics.Pending[Event] = forensics.Pending()

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        """Run every variant, until done, stopped, or a failure (``self.failure``); then the
        second pass, if the caller gives one (``Hooks.on_pass_done``)."""
        started = time.monotonic()
        try:
            self._loop(started)
            self._notify(self.recorder.flush)  # every row graded before the pass is judged
            again = [] if self._stopping() else self.hooks.on_pass_done(self.states)
            for state in again:
                state.second_pass = True
                self.queues[state.variant.scenario].append(state)
                self._set(state, VariantStatus.PENDING)
            if again:
                self._loop(started)
            self._settle_stacks()
        finally:
            self._kill_all()  # only when the loop itself failed: never leave workers behind
            self._write_stacks(self.stacks.stop_all("the run ended before gdb did"))
        for queue in self.queues.values():
            for state in queue:
                started_ = state.workers_started > 0
                self._set(state, VariantStatus.INTERRUPTED if started_ else VariantStatus.SKIPPED)

    def _loop(self, started: float) -> None:
        """Until nothing runs and nothing is queued (or the run stops)."""
        now = time.monotonic()
        next_tick, next_progress = now + TICK_S, now + PROGRESS_S
        next_memory, next_compaction = now, now + COMPACT_S
        self.round_at, self.round_cpu = now, time.process_time()
        while self.running or ((self._queued() or self._fed()) and not self._stopping()):
            now = time.monotonic()
            self._watch_pause(now)
            next_round = now + ROUND_S
            if now >= next_tick:
                next_tick += TICK_S
                self.hooks.on_tick(self.states, now - started)
            if now >= next_progress:
                next_progress = now + PROGRESS_S
                self._report_progress()
                self._cap_logs()
                self._notify(self.recorder.measure_disk)
            if now >= next_compaction and self.failure is None:
                next_compaction = now + COMPACT_S
                self.recorder.compact()
            if not self._stopping():
                self._start_workers()
            if now >= next_memory:  # before the rows it is for are drained
                next_memory = now + MEMORY_SAMPLE_S
                self.buffer.available_bytes = psutil.virtual_memory().available
            hurry = self._service_workers()
            self._write_stacks(self.stacks.ready())
            self._handle_stop()
            self._flush_if_due()
            if not hurry:
                time.sleep(max(0.0, next_round - time.monotonic()))

    def _watch_pause(self, now: float) -> None:
        """Say so (run.log, manifest) when the loop did not run for PAUSE_S or more since the
        last round: its variants' time went on without it."""
        cpu = time.process_time()
        gap, idle = now - self.round_at, (now - self.round_at) - (cpu - self.round_cpu)
        self.round_at, self.round_cpu = now, cpu
        if idle < PAUSE_S:
            return
        self._note(
            f"the coordinator did not run for {gap:.1f} s (stopped: SIGSTOP, Ctrl-Z, a "
            f"debugger; or starved of CPU or disk); its {len(self.running)} workers went on "
            "meanwhile, using that time of their variants' budgets"
        )
        self._notify(lambda: self.hooks.on_pause(time.time() - gap, gap))

    def _queued(self) -> bool:
        return any(self.queues.values())

    def _fed(self) -> bool:
        """More variants may still come from the feed."""
        return self.site.feed is not None and self.site.feed.open()

    def _take_fed(self) -> None:
        """Queue what the feed gives for the workers free now."""
        free = self.concurrency - len(self.running)
        if self.site.feed is None or free <= 0 or self._queued():
            return
        for state in self.site.feed.take(free):
            self.states.append(state)
            self.queues.setdefault(state.variant.scenario, collections.deque()).append(state)

    def _stopping(self) -> bool:
        """Asked to stop (a signal), or unable to go on (a failure)."""
        return bool(self.stop.count) or self.failure is not None

    def _handle_stop(self) -> None:
        if not self._stopping():
            return
        now = time.monotonic()
        if self.stop_deadline is None:
            self.stop_deadline = now + STOP_GRACE_S
            for worker in self.running.values():
                worker.process.request_stop()
        if self.stop.count > 1 or now > self.stop_deadline:
            for worker in self.running.values():
                process = worker.process
                if process.killed_for is None or process.attaching is not None:
                    process.kill(KillReason.STOP, dump_stack=False)  # a hang's gdb: stopped

    def _kill_all(self) -> None:
        """Kill and reap every worker still running (only when the loop itself failed: its
        own code is suspect, so nothing more is decoded or recorded)."""
        for worker in self.running.values():
            worker.process.kill(KillReason.STOP, dump_stack=False)
        for worker in self.running.values():
            worker.process.process.wait()
            worker.process.close()
            worker.process.remove_core_dir()
            worker.state.status = VariantStatus.INTERRUPTED
        self.running.clear()

    def compact_all(self) -> None:
        """After the loop: pack every dataset's parts into a handful of files."""
        self.recorder.compact_all()

    def _note(self, line: str) -> None:
        self._notify(lambda: self.hooks.on_note(line))

    def _on_disk(self, change: dict[str, object]) -> None:
        self._notify(lambda: self.hooks.on_disk(change))

    def _cap_logs(self) -> None:
        for worker in self.running.values():
            worker.process.cap_log(worker.state.scenario.spec.max_log_mib << 20)

    def _report_progress(self) -> None:
        running = [w.state for w in self.running.values()]
        self._notify(lambda: self.hooks.on_progress(running))

    # --- failures of the harness itself ---------------------------------------------------
    def _fail(self, failure: RunFailure) -> None:
        """Stop the run because the harness cannot go on; the first failure is the reason."""
        if self.failure is None:
            self.failure = failure

    def _notify(self, call: Callable[[], None]) -> None:
        try:
            call()
        except StorageError as exc:
            self._fail(exc)

    def _set(self, state: VariantState, status: VariantStatus) -> None:
        state.status = status
        self._notify(lambda: self.hooks.on_change(state))

    def salvage(self, make_room: Callable[[], None]) -> int:
        """After the loop: write what is still buffered and the events kept back (``make_room``
        when the disk refuses). Returns the rows that could still not be written."""
        unwritten, error = self.recorder.salvage(make_room, self.failure is not None)
        if error is not None:
            self._fail(error)
        return unwritten

    # --- starting -------------------------------------------------------------------------
    def _start_workers(self) -> None:
        self._take_fed()
        while len(self.running) < self.concurrency and self.failure is None:
            state = self._next_startable()
            if state is None:
                return
            self._start(state)

    def _next_startable(self) -> VariantState | None:
        """The first queued variant whose scenario is below its ``workers`` cap."""
        for scenario, queue in self.queues.items():
            if not queue:
                continue
            cap = queue[0].scenario.spec.workers
            if cap is None or self.in_use[scenario] < cap:
                return queue.popleft()
        return None

    def _start(self, state: VariantState) -> None:
        if (failure := _model_changed(state)) is not None:
            self._requeue(state)
            self._fail(failure)
            return
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        job = make_job(
            self.run_id,
            state.variant,
            state.scenario,
            worker_id,
            start_iterations=state.next_iterations,
            stop_iteration=state.stop_iteration,
            iterations_per_worker=state.scenario.spec.fresh_worker_every,
            duration_s=state.remaining_s(),
            fault=self.fault,
        )
        threads = len(state.next_iterations)
        state.ring_bytes = max(state.ring_bytes, ring_capacity(state.scenario, threads))
        try:
            process = WorkerProcess(job, self.layout, state.ring_bytes, state.scenario.spec.python)
        except StorageError as exc:  # its log cannot be created: nothing more can be written
            self._requeue(state)
            self._fail(exc)
            return
        except OSError as exc:  # no memory for its ring, a file-size limit, no processes left
            self._event_for(
                state,
                EventKind.QUARANTINE,
                f"cannot start a worker with a {state.ring_bytes >> 20} MiB ring: "
                f"{exc.strerror or exc}",
            )
            self._set(state, VariantStatus.QUARANTINED)
            return
        self.running[worker_id] = RunningWorker(process, state)
        self.in_use[state.variant.scenario] += 1
        state.workers_started += 1
        self._set(state, VariantStatus.RUNNING)

    def _requeue(self, state: VariantState) -> None:
        """Back to the front of its queue: the replacement continues the variant first."""
        self.queues[state.variant.scenario].appendleft(state)

    # --- watching -------------------------------------------------------------------------
    def _service_workers(self) -> bool:
        """Drain every worker, finish those that ended, look for hangs. True when the next
        round should not wait: a worker ended (its replacement starts at once) or a ring is
        filling up."""
        hurry = False
        for worker_id, worker in list(self.running.items()):
            worker.process.step()  # a kill in progress (gdb attached to a hang) goes on
            self._drain(worker)
            self._flush_if_due()
            hurry |= worker.process.filling()
            if worker.process.poll() is not None:
                self._drain_all(worker)
                del self.running[worker_id]
                self.in_use[worker.state.variant.scenario] -= 1
                self._finish(worker)
                hurry = True
            elif not worker.process.moved():
                self._check_hang(worker)
            elif len(worker.state.next_iterations) > 1:
                self._check_thread_hang(worker)
        return hurry

    def _drain_all(self, worker: RunningWorker) -> None:
        """Everything the worker published, however much: it has exited, nothing more comes."""
        while self._drain(worker):
            self._flush_if_due()

    def _flush_if_due(self) -> None:
        """Write the buffered rows when they are due: after each drain, so that the buffer
        holds at most about one drain's worth beyond its limit (big outputs)."""
        if self.buffer.due() and self.failure is None:
            self._notify(self.recorder.flush)

    def _drain(self, worker: RunningWorker) -> bool:
        """Record what the worker published since the last call; True when there was any."""
        process = worker.process
        had_hello = process.hello is not None
        decoded, moved = process.read()
        if not had_hello and process.hello is not None:
            worker.context = self._context(worker.state, process)
            worker.state.loop_started = process.hello_at
        now, rss_bytes, seen = time.monotonic(), -1, worker.thread_progress
        for item in decoded:
            if isinstance(item, IterationBatch):
                self.buffer.add_batch(worker.context, item)  # type: ignore[arg-type]
                rss_bytes = max(rss_bytes, count_batch(worker.state, seen, item, now))
            else:
                self.buffer.add(worker.context, item)  # type: ignore[arg-type]
                rss_bytes = max(rss_bytes, count_record(worker.state, seen, item, now))
        if rss_bytes >= 0:
            worker.state.rss_bytes = rss_bytes
        self._check_memory(worker, rss_bytes)
        return moved

    @staticmethod
    def _check_memory(worker: RunningWorker, rss_bytes: int) -> None:
        limit = worker.state.scenario.spec.max_rss_mib << 20
        if rss_bytes > limit and worker.process.killed_for is None:
            worker.process.kill(KillReason.MEMORY, dump_stack=False)

    def _context(self, state: VariantState, process: WorkerProcess) -> RowContext:
        """What every row of this worker shares, known once it has said hello."""
        assert process.hello is not None
        return RowContext(
            values={
                "run_id": self.run_id,
                "scenario": state.variant.scenario,
                "variant_id": state.variant.variant_id,
                **state.variant.params,
                "worker_id": process.job.worker_id,
                "pid": process.hello.pid,
                "host": self.site.host,
                # The factor's column: the version that ran, not the one asked for (the
                # worker stopped before its hello if they differed: stress.factors.version)
                "mnn_version": process.hello.mnn_version,
            },
            output_names=tuple(process.job.output_names),
            max_value_bytes=state.scenario.spec.record.max_value_bytes,
        )

    def _check_hang(self, worker: RunningWorker) -> None:
        if worker.process.killed_for is not None:
            return
        timeout = worker.state.scenario.spec.timeout
        if worker.process.hello_at is None:
            timeout = max(timeout, STARTUP_TIMEOUT_S)
        if time.monotonic() - worker.process.progress_at > timeout:
            worker.process.kill(KillReason.HANG)

    def _check_thread_hang(self, worker: RunningWorker) -> None:
        """A worker whose other threads still record can hide a thread stuck in MNN: each
        thread that has iterations left must record within the timeout."""
        process, state = worker.process, worker.state
        if process.killed_for is not None or process.hello_at is None:
            return
        limit = time.monotonic() - state.scenario.spec.timeout
        for thread in range(len(state.next_iterations)):
            if not state.has_iterations_left(thread):
                continue
            if worker.thread_progress.get(thread, process.hello_at) < limit:
                worker.process.kill(KillReason.HANG)
                return

    # --- endings --------------------------------------------------------------------------
    def _finish(self, worker: RunningWorker) -> None:
        state, process = worker.state, worker.process
        process.close()
        process.cap_log(state.scenario.spec.max_log_mib << 20)
        if process.hello_at is not None:
            state.used_s += time.monotonic() - process.hello_at
        state.loop_started, state.rss_bytes = None, None
        ending = deaths.classify(
            deaths.LastWords(
                process.poll(),
                process.killed_for,
                process.done,
                process.failure,
                process.protocol_error,
                process.oom_killed,
            ),
            state.scenario.spec.timeout,
            self._stopping(),
        )
        if ending.kind is not None:
            self._record_ending(worker, ending)
        process.remove_core_dir()
        for event in process.memcheck_events(self.run_id):
            self._write_event(event)
        status = self._next_status(state, ending, process.hello is not None)
        resize = ending.kind is EventKind.RESIZE and process.failure is not None
        if resize and not self._resized(state, process.failure.ring_bytes_needed or 0):
            status = VariantStatus.QUARANTINED
        self._set(state, status)
        if state.status is VariantStatus.PENDING:
            self._requeue(state)

    def _resized(self, state: VariantState, record: int) -> bool:
        """A record of ``record`` bytes did not fit: give the next worker a ring it fits, or
        say (an event) that no ring here can hold it. True when it now fits."""
        why = ring_refusal(record)
        if why is None:
            state.ring_bytes = ring_for_records(record, len(state.next_iterations))
            return True
        self._event_for(state, EventKind.QUARANTINE, f"cannot be recorded here: {why}")
        return False

    def _next_status(
        self, state: VariantState, ending: deaths.Ending, started: bool
    ) -> VariantStatus:
        if ending.kind is EventKind.HARNESS:
            return VariantStatus.FAILED
        if self._stopping() and not state.exhausted():
            return VariantStatus.INTERRUPTED
        if ending.is_death and not started and state.variant.params["misuse"] != "none":
            return VariantStatus.REFUSED  # the same misuse would fail the same way again
        if ending.is_death and state.crashes > state.scenario.spec.max_crashes:
            budget = state.scenario.spec.max_crashes
            self._event_for(
                state,
                EventKind.QUARANTINE,
                message=f"{state.crashes} worker deaths; budget is max_crashes={budget}",
            )
            return VariantStatus.QUARANTINED
        recycled = state.scenario.spec.fresh_worker_every is not None
        if ending.kind is None and recycled and not state.exhausted():
            return VariantStatus.PENDING  # a fresh worker goes on where this one stopped
        if ending.kind is None or state.exhausted():
            return VariantStatus.DONE
        return VariantStatus.PENDING

    def _record_ending(self, worker: RunningWorker, ending: deaths.Ending) -> None:
        """Write the event; a death also costs the variant its iteration in flight."""
        process, state = worker.process, worker.state
        assert ending.kind is not None
        in_flight = self._in_flight(worker)
        event = process.ending_event(self.run_id, ending, in_flight)
        stack = process.read_native_stack(ending)
        if isinstance(stack, forensics.Reading):  # the stack follows in its own event
            stack = self.stacks.add(event, stack) or forensics.reading_note(stack)
        self._write_event(dataclasses.replace(event, native_stack=stack))
        if ending.is_death:
            state.crashes += 1
            for thread, iteration in enumerate(in_flight):
                if iteration is not None:  # lost with the worker: the variant goes past it
                    state.next_iterations[thread] = iteration + 1

    @staticmethod
    def _in_flight(worker: RunningWorker) -> list[int | None]:
        """Per thread, the iteration it was in when the worker ended (None: it was not in
        one: not started, done, or out of iterations)."""
        process, state = worker.process, worker.state
        threads = range(len(state.next_iterations))
        if process.hello is None or process.done is not None:
            return [None for _ in threads]
        return [state.next_iterations[t] if state.has_iterations_left(t) else None for t in threads]

    def _event_for(self, state: VariantState, kind: EventKind, message: str) -> None:
        self._write_event(
            Event(
                run_id=self.run_id,
                scenario=state.variant.scenario,
                variant_id=state.variant.variant_id,
                worker_id=None,
                pid=None,
                kind=kind,
                message=message,
                params=state.variant.params,
            )
        )

    def _write_stacks(self, read: list[tuple[Event, str]]) -> None:
        """The native stacks gdb read, each as an event beside its death's."""
        for death, stack in read:
            self._write_event(native_stack_of(death, stack))

    def _settle_stacks(self) -> None:
        """After the loop: the death events still waiting for gdb, each written as its stack
        is read. Every gdb is bounded by its own timeout; a stopping run waits no longer
        than its workers' grace, and a second stop request not at all."""
        if self.stacks:
            self._note(f"waiting for gdb to read {len(self.stacks)} native stack(s)")
        while self.stacks and self.stop.count < 2:
            if self._stopping() and self.stop_deadline is None:  # asked to stop meanwhile
                self.stop_deadline = time.monotonic() + STOP_GRACE_S
            if self.stop_deadline is not None and time.monotonic() > self.stop_deadline:
                break
            self._write_stacks(self.stacks.ready())
            time.sleep(ROUND_S)
        self._write_stacks(self.stacks.stop_all("the run was stopping"))

    def _write_event(self, event: Event) -> None:
        self._notify(lambda: self.recorder.write_event(event))  # kept; salvage() tries again


def _model_changed(state: VariantState) -> RunFailure | None:
    """The run cannot go on when the model file a new worker would load is not the one the
    run began with: its rows would mix two models under one variant."""
    what = state.scenario.model_change(state.variant.params)
    if what is None:
        return None
    return RunFailure(
        f"the model file {what} during the run: a worker started now would run another "
        "model under the same variants",
        file=state.scenario.model_for(state.variant.params).path,
        fix="keep a model file unchanged while a run uses it (edit a copy); put it back and "
        "`mnn-stress run --resume RUN_DIR`, or start a new run",
    )
