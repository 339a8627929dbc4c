"""The coordinator: runs variants in worker processes, watches them, survives their deaths.

One loop, one thread: start workers up to the concurrency limit, drain their rings into the
row buffer, turn every death (signal, non-zero exit, exception, hang) into an event, start a
replacement that continues the variant until its crash budget is spent, and stop cleanly on
SIGINT/SIGTERM (a second one kills at once). No worker outlives the loop.
"""

from __future__ import annotations

import collections
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stress import deaths
from stress.jobs import make_job, ring_capacity
from stress.protocol import KIND_ITERATION, decode_iteration, decode_message
from stress.records import EventWriter, IterationBuffer, PartWriter, RowContext
from stress.ring import CorruptRing
from stress.scenario import LoadedScenario
from stress.variants import Variant
from stress.workerproc import WorkerProcess

STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 10.0
IDLE_SLEEP_S = 0.005
TICK_S = 10.0


@dataclass
class VariantState:
    """Where a variant stands: the next iteration to run, its budget and its crash count."""

    variant: Variant
    scenario: LoadedScenario
    stop_iteration: int | None
    duration_s: float | None  # iteration-loop time, summed over the variant's workers
    next_iteration: int = 0
    used_s: float = 0.0
    ring_bytes: int = 0
    completed: int = 0
    crashes: int = 0
    workers_started: int = 0
    status: str = "pending"  # pending, running, done, quarantined, interrupted, skipped

    def remaining_s(self) -> float | None:
        return None if self.duration_s is None else self.duration_s - self.used_s

    def exhausted(self) -> bool:
        if self.stop_iteration is not None and self.next_iteration >= self.stop_iteration:
            return True
        remaining = self.remaining_s()
        return remaining is not None and remaining <= 0.01


@dataclass
class RunningWorker:
    process: WorkerProcess
    state: VariantState
    context: RowContext | None = None
    hello_at: float | None = None
    last_iteration: int | None = None
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)


class Coordinator:
    def __init__(
        self,
        run_id: str,
        run_dir: Path,
        states: list[VariantState],
        concurrency: int,
        fault: str | None = None,
        on_change: Callable[[VariantState], None] | None = None,
        on_tick: Callable[[list[VariantState], float], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.states = states
        self.concurrency = max(1, concurrency)
        self.fault = fault
        self.on_change = on_change or (lambda state: None)
        self.on_tick = on_tick or (lambda states, elapsed: None)
        self.buffer = IterationBuffer(PartWriter(run_dir / "iterations"))
        self.events = EventWriter(run_dir / "events")
        self.queue = collections.deque(states)
        self.running: dict[int, RunningWorker] = {}
        self.next_worker_id = 0
        self.stop_requests = 0
        self.stop_deadline: float | None = None

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> bool:
        """Run every variant; returns False when the run was interrupted."""
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._request_stop) for s in handled}
        started = time.monotonic()
        next_tick = started + TICK_S
        try:
            while self.running or (self.queue and not self.stop_requests):
                if time.monotonic() >= next_tick:
                    next_tick += TICK_S
                    self.on_tick(self.states, time.monotonic() - started)
                if not self.stop_requests:
                    self._start_workers()
                busy = self._service_workers()
                self._handle_stop()
                if self.buffer.due():
                    self.buffer.flush()
                if not busy:
                    time.sleep(IDLE_SLEEP_S)
        finally:
            self._kill_all()  # only when the loop itself failed: never leave workers behind
            self.buffer.flush()
            for s, handler in previous.items():
                signal.signal(s, handler)
        for state in self.queue:
            if state.status == "pending":
                state.status = "interrupted" if state.workers_started else "skipped"
                self.on_change(state)
        return not self.stop_requests

    def _request_stop(self, *_: Any) -> None:
        self.stop_requests += 1

    def _handle_stop(self) -> None:
        if not self.stop_requests:
            return
        now = time.monotonic()
        if self.stop_deadline is None:
            self.stop_deadline = now + STOP_GRACE_S
            for worker in self.running.values():
                worker.process.request_stop()
        if self.stop_requests > 1 or now > self.stop_deadline:
            for worker in self.running.values():
                if worker.process.killed_for is None:
                    worker.process.kill("stop", dump_stack=False)

    def _kill_all(self) -> None:
        """Signal every worker, then reap and drain each; their variants end interrupted."""
        for worker in self.running.values():
            worker.process.kill("stop", dump_stack=False)
        for worker in self.running.values():
            worker.process.process.wait()
            try:
                self._drain_all(worker)
            finally:
                worker.process.close()
                worker.state.status = "interrupted"
                self.on_change(worker.state)
        self.running.clear()

    # --- starting -------------------------------------------------------------------------
    def _start_workers(self) -> None:
        while len(self.running) < self.concurrency:
            state = self._next_startable()
            if state is None:
                return
            self._start(state)

    def _next_startable(self) -> VariantState | None:
        for state in list(self.queue):
            cap = state.scenario.spec.workers
            in_use = sum(w.state.scenario is state.scenario for w in self.running.values())
            if cap is None or in_use < cap:
                self.queue.remove(state)
                return state
        return None

    def _start(self, state: VariantState) -> None:
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        job = make_job(
            self.run_id,
            state.variant,
            state.scenario,
            worker_id,
            start_iteration=state.next_iteration,
            stop_iteration=state.stop_iteration,
            duration_s=state.remaining_s(),
            fault=self.fault,
        )
        log = self.run_dir / "logs" / f"{state.variant.variant_id}-w{worker_id}.log"
        state.ring_bytes = max(state.ring_bytes, ring_capacity(state.scenario))
        try:
            process = WorkerProcess(job, log, state.ring_bytes)
        except OSError as exc:  # no memory for the ring, no processes left, ...
            state.status = "quarantined"
            self.events.write(
                run_id=self.run_id,
                scenario=state.variant.scenario,
                variant_id=state.variant.variant_id,
                worker_id=worker_id,
                kind="quarantine",
                message=f"cannot start a worker: {exc}",
            )
            self.on_change(state)
            return
        self.running[worker_id] = RunningWorker(process, state)
        state.workers_started += 1
        state.status = "running"
        self.on_change(state)

    # --- watching -------------------------------------------------------------------------
    def _service_workers(self) -> bool:
        busy = False
        for worker_id, worker in list(self.running.items()):
            busy |= self._drain(worker)
            if worker.process.poll() is not None:
                self._drain_all(worker)
                self._finish(worker)
                del self.running[worker_id]
                busy = True
            elif not worker.process.moved():
                self._check_hang(worker)
        return busy

    def _drain_all(self, worker: RunningWorker) -> None:
        """Everything the worker published, however much: it has exited, nothing more comes."""
        while self._drain(worker):
            pass

    def _drain(self, worker: RunningWorker) -> bool:
        if worker.process.killed_for == "protocol":
            return False
        try:
            records = worker.process.drain()
            for kind, payload in records:
                if kind == KIND_ITERATION:
                    self._on_iteration(worker, payload)
                else:
                    self._on_message(worker, decode_message(payload))
        except (CorruptRing, ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
            # A worker that scribbles on its ring must not take the coordinator down with it.
            worker.messages["protocol"] = {"message": f"{type(exc).__name__}: {exc}"}
            worker.process.kill("protocol", dump_stack=False)
            return False
        return bool(records)

    def _on_iteration(self, worker: RunningWorker, payload: bytes) -> None:
        if worker.context is None:
            raise ValueError("an iteration record before the worker's hello")
        record = decode_iteration(payload, len(worker.process.job.output_names))
        self.buffer.add(worker.context, record)
        worker.last_iteration = record.iteration
        worker.state.completed += 1
        worker.state.next_iteration = record.iteration + 1

    def _on_message(self, worker: RunningWorker, message: dict[str, Any]) -> None:
        worker.messages[message["type"]] = message
        if message["type"] == "hello":
            worker.hello_at = time.monotonic()
            state = worker.state
            worker.context = RowContext(
                values={
                    "run_id": self.run_id,
                    "scenario": state.variant.scenario,
                    "variant_id": state.variant.variant_id,
                    **state.variant.params,
                    "worker_id": worker.process.job.worker_id,
                    "pid": message["pid"],
                    "mnn_version": message["mnn_version"],
                },
                output_names=tuple(worker.process.job.output_names),
                max_value_bytes=state.scenario.spec.record.max_value_bytes,
            )

    def _check_hang(self, worker: RunningWorker) -> None:
        if worker.process.killed_for is not None:
            return
        timeout = worker.state.scenario.spec.timeout
        if worker.hello_at is None:
            timeout = max(timeout, STARTUP_TIMEOUT_S)
        if time.monotonic() - worker.process.progress_at > timeout:
            worker.process.kill("hang")

    # --- endings --------------------------------------------------------------------------
    def _finish(self, worker: RunningWorker) -> None:
        state, process = worker.state, worker.process
        process.close()
        if worker.hello_at is not None:
            state.used_s += time.monotonic() - worker.hello_at
        ending = deaths.classify(
            process.poll(),
            process.killed_for,
            worker.messages,
            state.scenario.spec.timeout,
            bool(self.stop_requests),
        )
        if ending.kind != "done":
            self._record_ending(worker, ending)
        if ending.kind == "resize":
            state.ring_bytes = 4 * worker.messages["error"]["needed"]
        if self.stop_requests and not state.exhausted():
            state.status = "interrupted"
        elif ending.is_death and state.crashes > state.scenario.spec.max_crashes:
            state.status = "quarantined"
            self._event(
                worker,
                "quarantine",
                message=f"{state.crashes} worker deaths; budget "
                f"is max_crashes={state.scenario.spec.max_crashes}",
            )
        elif ending.kind == "done" or state.exhausted():
            state.status = "done"
        else:
            state.status = "pending"
            self.queue.appendleft(state)  # the replacement continues the variant first
        self.on_change(state)

    def _record_ending(self, worker: RunningWorker, ending: deaths.Ending) -> None:
        """Write the event; a death also costs the variant its iteration in flight."""
        process, state = worker.process, worker.state
        in_flight = None
        if "hello" in worker.messages and "done" not in worker.messages:
            in_flight = (
                worker.last_iteration + 1
                if worker.last_iteration is not None
                else process.job.start_iteration
            )
        tail = process.log_tail()
        error = worker.messages.get("error", {})
        self._event(
            worker,
            ending.kind,
            iteration=in_flight,
            signal=ending.signal,
            exit_code=process.poll(),
            message=ending.message,
            stack=error.get("traceback") or deaths.python_stack(tail),
            stderr_tail="\n".join(tail.splitlines()[-40:]),
        )
        if ending.is_death:
            state.crashes += 1
            if in_flight is not None:
                state.next_iteration = max(state.next_iteration, in_flight + 1)

    def _event(self, worker: RunningWorker, kind: str, **fields: Any) -> None:
        hello = worker.messages.get("hello", {})
        self.events.write(
            run_id=self.run_id,
            scenario=worker.state.variant.scenario,
            variant_id=worker.state.variant.variant_id,
            worker_id=worker.process.job.worker_id,
            pid=worker.process.pid,
            kind=kind,
            mnn_version=hello.get("mnn_version"),
            **fields,
        )
