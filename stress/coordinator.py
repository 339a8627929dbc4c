"""The coordinator: runs variants in worker processes, watches them, survives their deaths.

One loop, one thread: start workers up to the concurrency limit, drain their rings into the
row buffer, turn every death (signal, non-zero exit, exception, hang) into an event, start a
replacement that continues the variant until its crash budget is spent, and stop cleanly on
SIGINT/SIGTERM (a second one kills at once).
"""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stress.protocol import KIND_ITERATION, InputPlan, Job, decode_iteration, decode_message
from stress.records import ITERATION_SCHEMA, EventWriter, IterationBuffer, PartWriter, RowContext
from stress.scenario import LoadedScenario
from stress.variants import Variant
from stress.workerproc import WorkerProcess, python_stack

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
    duration_s: float | None
    next_iteration: int = 0
    deadline_ns: int | None = None
    completed: int = 0
    crashes: int = 0
    workers_started: int = 0
    status: str = "pending"  # pending, running, done, quarantined, interrupted, skipped

    def exhausted(self) -> bool:
        if self.stop_iteration is not None and self.next_iteration >= self.stop_iteration:
            return True
        return self.deadline_ns is not None and time.time_ns() >= self.deadline_ns


@dataclass
class RunningWorker:
    process: WorkerProcess
    state: VariantState
    context: RowContext | None = None
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
        self.buffer = IterationBuffer(PartWriter(run_dir / "iterations", ITERATION_SCHEMA))
        self.events = EventWriter(run_dir / "events")
        self.queue = collections.deque(states)
        self.running: dict[int, RunningWorker] = {}
        self.next_worker_id = 0
        self.stop_requests = 0
        self.stop_deadline: float | None = None

    # --- the loop -------------------------------------------------------------------------
    def run(self) -> bool:
        """Run every variant; returns False when the run was interrupted."""
        previous = {
            s: signal.signal(s, self._request_stop) for s in (signal.SIGINT, signal.SIGTERM)
        }
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
        if state.deadline_ns is None and state.duration_s is not None:
            state.deadline_ns = time.time_ns() + int(state.duration_s * 1e9)
        worker_id = self.next_worker_id
        self.next_worker_id += 1
        job = self._job(state, worker_id)
        log = self.run_dir / "logs" / f"{state.variant.variant_id}-w{worker_id}.log"
        process = WorkerProcess(job, log, ring_capacity(state.scenario))
        self.running[worker_id] = RunningWorker(process, state)
        state.workers_started += 1
        state.status = "running"
        self.on_change(state)

    def _job(self, state: VariantState, worker_id: int) -> Job:
        spec, model = state.scenario.spec, state.scenario.model
        plans = []
        for tensor in model.inputs:
            given = spec.inputs.get(tensor.name)
            shape = list(given.shape) if given and given.shape else list(tensor.shape)
            plans.append(
                InputPlan(
                    tensor.name,
                    shape,
                    tensor.dtype,
                    given.distribution if given else "normal",
                    given.scale if given else 1.0,
                )
            )
        return Job(
            run_id=self.run_id,
            scenario=spec.name,
            variant_id=state.variant.variant_id,
            worker_id=worker_id,
            model_path=model.path,
            inputs=plans,
            output_names=[t.name for t in model.outputs],
            params=state.variant.params,
            seed=spec.seed,
            start_iteration=state.next_iteration,
            stop_iteration=state.stop_iteration,
            deadline_ns=state.deadline_ns,
            fault=self.fault,
        )

    # --- watching -------------------------------------------------------------------------
    def _service_workers(self) -> bool:
        busy = False
        for worker_id, worker in list(self.running.items()):
            busy |= self._drain(worker)
            if worker.process.poll() is not None:
                self._drain(worker)
                self._finish(worker)
                del self.running[worker_id]
                busy = True
            elif not worker.process.moved():
                self._check_hang(worker)
        return busy

    def _drain(self, worker: RunningWorker) -> bool:
        records = worker.process.drain()
        for kind, payload in records:
            try:
                if kind == KIND_ITERATION:
                    record = decode_iteration(payload)
                    self.buffer.add(worker.context, record)
                    worker.last_iteration = record.iteration
                    worker.state.completed += 1
                    worker.state.next_iteration = record.iteration + 1
                else:
                    self._on_message(worker, decode_message(payload))
            except Exception as exc:  # a worker that scribbles on its ring must not kill us
                worker.messages["protocol"] = {"message": f"{type(exc).__name__}: {exc}"}
                worker.process.kill("protocol", dump_stack=False)
                break
        return bool(records)

    def _on_message(self, worker: RunningWorker, message: dict[str, Any]) -> None:
        worker.messages[message["type"]] = message
        if message["type"] == "hello":
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
        timeout = worker.state.scenario.spec.timeout
        if "hello" not in worker.messages:
            timeout = max(timeout, STARTUP_TIMEOUT_S)
        if time.monotonic() - worker.process.progress_at > timeout:
            worker.process.kill("hang")

    # --- deaths and endings ---------------------------------------------------------------
    def _finish(self, worker: RunningWorker) -> None:
        state, process = worker.state, worker.process
        returncode = process.poll()
        clean = returncode == 0 and "done" in worker.messages and process.killed_for is None
        if not clean:
            self._record_death(worker, returncode)
        process.close()
        if self.stop_requests and not state.exhausted():
            state.status = "interrupted"
        elif not clean and state.crashes > state.scenario.spec.max_crashes:
            state.status = "quarantined"
            self._event(
                worker,
                "quarantine",
                message=f"{state.crashes} worker deaths; budget is "
                f"max_crashes={state.scenario.spec.max_crashes}",
            )
        elif clean or state.exhausted():
            state.status = "done"
        else:
            state.status = "pending"
            self.queue.appendleft(state)  # the replacement continues the variant first
        self.on_change(state)

    def _record_death(self, worker: RunningWorker, returncode: int) -> None:
        process, state = worker.process, worker.state
        in_flight = (
            worker.last_iteration + 1
            if worker.last_iteration is not None
            else process.job.start_iteration
        )
        tail = process.log_tail()
        kind, signal_name, message = _classify(
            returncode, process.killed_for, worker.messages, state.scenario.spec.timeout
        )
        error = worker.messages.get("error", {})
        self._event(
            worker,
            kind,
            iteration=in_flight,
            signal=signal_name,
            exit_code=returncode,
            message=message,
            stack=error.get("traceback") or python_stack(tail),
            stderr_tail="\n".join(tail.splitlines()[-40:]),
        )
        if kind != "interrupted":
            state.crashes += 1
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


def _classify(
    returncode: int, killed_for: str | None, messages: dict[str, dict[str, Any]], timeout: float
) -> tuple[str, str | None, str]:
    """(event kind, signal name, message) for a worker that did not end cleanly."""
    signal_name = signal.Signals(-returncode).name if returncode < 0 else None
    if killed_for == "hang":
        return "hang", signal_name, f"no progress for {timeout:g}s; killed"
    if killed_for == "protocol":
        return "protocol", signal_name, f"unreadable record: {messages['protocol']['message']}"
    if killed_for == "stop":
        return "interrupted", signal_name, "killed while the run was stopping"
    if "error" in messages:
        error = messages["error"]
        return "exception", signal_name, f"{error['exception']}: {error['message']}"
    if signal_name:
        return "crash", signal_name, f"worker died of {signal_name}"
    return "exit", None, f"worker exited with code {returncode}"


def ring_capacity(scenario: LoadedScenario) -> int:
    """Room for at least 16 iterations, and never less than 16 MiB."""
    record = sum(t.nbytes + 64 for t in scenario.model.outputs) + 4096
    return max(16 << 20, 16 * record)
