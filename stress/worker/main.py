"""The only code that runs inside a worker process: load the model, hammer it, record.

Started fresh (exec, never fork) as ``python -m stress.worker`` with a Job on stdin and the
ring's fd inherited. Imports only the stdlib, numpy and MNN, so it runs under another
interpreter that has just those. Assumes any MNN call can kill it: every finished iteration
is in the ring before the next MNN call is made.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import faulthandler
import gc
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

from stress.contract.protocol import (
    EXIT_HARNESS_SETUP,
    STATUS_ERROR,
    STATUS_INVALID,
    STATUS_OK,
    Done,
    Failure,
    Hello,
    IterationWriter,
    Job,
    Observation,
    encode_message,
)
from stress.contract.ring import (
    CORES_VAR,
    EXIT_ORPHANED,
    RecordTooLarge,
    RingWriter,
    coordinator_pid,
)
from stress.contract.stages import Binding, ThreadContext
from stress.worker import faults, trace
from stress.worker.crew import Crew

EXIT_EXCEPTION = 3
PR_SET_PDEATHSIG = 1


class Worker:
    """One worker process: builds the variant's MNN objects, runs its threads, says how it
    ended. Every message and record goes through one ring, under ``ring_lock``."""

    def __init__(self, job: Job, ring: RingWriter) -> None:
        self.job = job
        self.ring = ring
        self.ring_lock = threading.Lock()
        self.stopping = False
        self.deadline = faults.NEVER

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def send(self, message: Any) -> None:
        with self.ring_lock:
            encode_message(self.ring, message)

    def run(self) -> int:
        """Set up the world around the loop (ballast, sibling processes), run, undo it."""
        from stress.factors import before_loop, complete

        params = complete(self.job.params)
        undo = before_loop(params)
        try:
            return self._run(params)
        finally:
            for call in undo:
                call()

    def _run(self, params: dict[str, Any]) -> int:
        from stress.factors import before_build, mnn_config
        from stress.worker.drivers import DriverOptions, ModelSpec, make_engine

        job = self.job
        planned = tuple(f for f in faults.parse(job.fault) if f.applies(params))
        faults.Injector(planned, self.ring).at_load(min(job.start_iterations))
        spec = ModelSpec(
            job.model_path,
            [(p.name, p.shape, p.dtype) for p in job.inputs],
            job.output_names,
            mnn_config(params),
        )
        inputs = _ours_first(params, job)
        crew = Crew(params["threads"], self._start, self.stop)
        try:
            before_build(params)  # rlimit_as_from=setup: the cap, from here on
            options = DriverOptions.of(params)
            engine = make_engine(options, spec)  # the build stage: what the threads share
            shared: dict[str, Any] = {}
            tracer = _tracer(shared)
            loops = [
                ThreadLoop(self, t, engine.bind(t), params, shared, tracer, planned, inputs[t])
                for t in range(params["threads"])
            ]
        except BaseException:
            crew.dismiss()
            raise
        crew.run(loops)
        # Done first: a death in the last look then has no iteration in flight.
        self.send(Done(completed=sum(loop.completed for loop in loops), stopped=self.stopping))
        last_look: dict[str, int] = {}
        if options.output_lifetime != "copy":
            last_look = self._look_again(loops, engine, options.output_lifetime)
        if tracer is not None:
            tracer.dump(os.environ[trace.ENV_VAR], job.variant_id, last_look)
        return 0

    def _start(self) -> None:
        """Every thread is set up: apply the limits that had to wait for that (the
        address-space cap), say hello, and start the clock of the iteration budget."""
        import MNN
        import numpy as np

        from stress.factors import after_setup

        after_setup(self.job.params)
        self.send(
            Hello(
                pid=os.getpid(),
                mnn_version=MNN.version(),
                numpy_version=np.__version__,
                python=sys.version.split()[0],
                executable=sys.executable,
            )
        )
        if self.job.duration_s is not None:
            self.deadline = time.perf_counter_ns() + int(self.job.duration_s * 1e9)

    def _look_again(self, loops: list[ThreadLoop], engine: Any, lifetime: str) -> dict[str, int]:
        """``output_lifetime``: every thread runs once more on other inputs; with
        ``after_release`` every MNN object is then dropped and the freed sizes allocated
        again, poisoned; then each thread's kept views are recorded again. Returns how many
        views were read and blocks poisoned (for the test trace)."""
        from stress.worker import output_lifetimes
        from stress.worker.drivers import MNNError

        kept = [loop.binding.kept_views() for loop in loops]
        views = [view for k in kept for _, outputs in k for view in outputs]
        for loop in loops:
            with contextlib.suppress(MNNError):  # the views are read all the same
                loop.binding.iteration(output_lifetimes.other_inputs(loop.inputs))
        poison: list[int] = []
        if lifetime == "after_release":
            for loop in loops:
                loop.binding.release()
            engine.release()
            gc.collect()
            poison = output_lifetimes.poison_like(views)
        observation = Observation.RETAINED if lifetime == "retained" else Observation.AFTER_RELEASE
        for loop, thread_kept in zip(loops, kept):
            loop.write_again(thread_kept, observation)
        output_lifetimes.free_all(poison)
        return {"views": len(views), "poisoned": len(poison)}


class ThreadLoop:
    """One thread's iteration loop: its binding inside the factors' layers, its own inputs,
    its own iteration numbers, and its own writer into the worker's ring."""

    def __init__(
        self,
        worker: Worker,
        thread: int,
        binding: Binding,
        params: dict[str, Any],
        shared: dict[str, Any],
        tracer: Any,
        planned: tuple[faults.Fault, ...],
        inputs: list[Any],
    ) -> None:
        from stress.factors import wrap

        job = worker.job
        self.worker = worker
        self.thread = thread
        self.injector = faults.Injector(planned, worker.ring, thread)
        if tracer is not None:
            binding = tracer.layer(binding, thread)
        context = ThreadContext(thread, job.seed, shared, job.start_iterations[thread])
        self.binding = self.injector.wrap(wrap(params, binding, context))
        if tracer is not None:
            tracer.outermost(self.binding, thread)
        self.writer = IterationWriter(
            worker.ring, worker.ring_lock if params["threads"] > 1 else None
        )
        self.inputs = inputs
        self.start = job.start_iterations[thread]
        self.completed = 0

    def run(self) -> None:
        """The hot loop: kept free of anything that is not inference or recording. An
        MNNError is MNN's doing and becomes a row; any other exception is ours and ends it."""
        from stress.worker.drivers import MNNError

        worker, job, write = self.worker, self.worker.job, self.writer.write
        binding, inputs, injector, thread = self.binding, self.inputs, self.injector, self.thread
        ends = type(binding).end is not Binding.end  # skip the call when it does nothing
        stop_at = job.stop_iteration if job.stop_iteration is not None else faults.NEVER
        if job.iterations_per_worker is not None:  # a fresh worker takes over after these
            stop_at = min(stop_at, self.start + job.iterations_per_worker)
        rss_every = int(job.rss_interval_s * 1e9)
        rss, rss_at = read_rss(), 0
        iteration = self.start
        clock, now = time.perf_counter_ns, time.time_ns
        while iteration < stop_at and not worker.stopping:
            if iteration >= injector.first:
                injector.before(iteration)
            ts = now()
            if ts - rss_at > rss_every:
                rss, rss_at = read_rss(), ts
            start = clock()
            if start >= worker.deadline:
                break
            try:
                rc, outputs = binding.iteration(inputs)
                error = None
            except MNNError as exc:  # MNN raised: a finding, recorded as a row
                rc, outputs, error = -1, [], str(exc)
            except MemoryError as exc:  # no memory for MNN or for its outputs: also a finding
                rc, outputs, error = -1, [], f"MemoryError: {exc}"
            latency = clock() - start
            status = STATUS_OK if rc == 0 else (STATUS_ERROR if error else STATUS_INVALID)
            write((iteration, ts, latency, rss, rc, thread, status, 0), outputs, error)
            iteration += 1
            if ends:
                binding.end()
        self.completed = iteration - self.start

    def write_again(self, kept: list[tuple[int, list[Any]]], observation: int) -> None:
        """Rows of earlier iterations: what their kept output views hold now."""
        rss = read_rss()
        for iteration, views in kept:
            head = (iteration, time.time_ns(), 0, rss, 0, self.thread, STATUS_OK, observation)
            self.writer.write(head, views)


def _tracer(shared: dict[str, Any]) -> Any:
    if not os.environ.get(trace.ENV_VAR):
        return None
    return trace.Tracer(shared)


def _ours_first(params: dict[str, Any], job: Job) -> list[list[Any]]:
    """What the harness needs besides MNN's objects, made before any cap (its imports and each
    thread's inputs): an allocation that fails under the cap is then MNN's, or the
    interpreter's own small ones, never a module of ours failing to load."""
    import importlib

    from stress.worker import input_lifetimes, output_lifetimes  # noqa: F401 - loaded now
    from stress.worker.inputs import make_inputs

    importlib.import_module(f"stress.worker.drivers.{params['api']}")
    return [make_inputs(job.inputs, job.seed) for _ in range(params["threads"])]


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def read_rss() -> int:
    """Resident bytes not shared (so the record ring and mapped files do not count), from
    /proc; cheap enough to sample every few hundred milliseconds."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            fields = statm.read().split()
        return (int(fields[1]) - int(fields[2])) * PAGE_SIZE
    except OSError:
        return -1


CORE_LIMIT_BYTES = 1 << 30  # a larger core is cut short: the stacks are near its start


def allow_cores() -> None:
    """Raise the soft core size limit (the hard one permitting), so that a death by a signal
    leaves a core for the coordinator's gdb (``stress.coordinator.workers.forensics``)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    limit = CORE_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(hard, CORE_LIMIT_BYTES)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (limit, hard))


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the coordinator dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            print(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}", file=sys.stderr)
    except (OSError, AttributeError):
        print("prctl unavailable: this worker may outlive its coordinator", file=sys.stderr)


def main() -> int:
    if os.environ.get(CORES_VAR):
        allow_cores()
    faulthandler.enable(all_threads=True)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the coordinator asks before a kill
    die_with_parent()
    if os.getppid() != coordinator_pid():  # the coordinator died before the request took effect
        return EXIT_ORPHANED
    try:
        job = Job.from_json(sys.stdin.read())
        ring = RingWriter(job.ring_fd)
    except Exception:  # no ring to say it in: the exit code says it was ours
        traceback.print_exc()
        return EXIT_HARNESS_SETUP
    from stress.factors.limits import lift_address_space_cap

    worker = Worker(job, ring)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when we stop
    try:
        return worker.run()
    except Exception as exc:
        lift_address_space_cap()  # its last words need memory that the cap may have taken
        worker.send(failure(exc))
        return EXIT_EXCEPTION


def _origin(exc: Exception) -> str:
    """``mnn``: MNN raised; ``memory``: an allocation failed (under a memory limit, a
    finding: a ``MemoryError``, or ``ENOMEM`` from the kernel for a mapping); ``harness``: a
    bug of ours."""
    from stress.worker.drivers import MNNError

    if isinstance(exc, MemoryError) or str(exc).startswith("MemoryError:"):
        return "memory"
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
        return "memory"
    return "mnn" if isinstance(exc, MNNError) else "harness"


def failure(exc: Exception) -> Failure:
    """The last words for an exception: whose it was (MNN's or ours) and its traceback."""
    return Failure(
        origin=_origin(exc),
        exception=type(exc).__name__,
        message=str(exc),
        traceback=traceback.format_exc(),
        ring_bytes_needed=exc.needed if isinstance(exc, RecordTooLarge) else None,
    )


if __name__ == "__main__":
    sys.exit(main())
