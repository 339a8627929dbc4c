"""The only code that runs inside a worker process: load the model, hammer it, record.

Started fresh (exec, never fork) as ``python -m stress.worker`` with a Job on stdin and the
ring's fd inherited. Imports only the stdlib, numpy and MNN, so it runs under another
interpreter that has just those. Assumes any MNN call can kill it: every finished iteration
is in the ring before the next MNN call is made.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import time
import traceback
from typing import Any

from stress import faults
from stress.protocol import (
    EXIT_HARNESS_SETUP,
    STATUS_ERROR,
    STATUS_INVALID,
    STATUS_OK,
    Done,
    Failure,
    Hello,
    IterationWriter,
    Job,
    encode_message,
)
from stress.ring import EXIT_ORPHANED, RecordTooLarge, RingWriter, coordinator_pid

EXIT_EXCEPTION = 3
PR_SET_PDEATHSIG = 1


class Worker:
    def __init__(self, job: Job, ring: RingWriter) -> None:
        self.job = job
        self.ring = ring
        self.stopping = False

    def stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> int:
        import MNN
        import numpy as np

        from stress.drivers import make_driver
        from stress.factors import mnn_config
        from stress.inputs import make_inputs

        job = self.job
        injector = faults.Injector(faults.parse(job.fault), self.ring)
        injector.at_load(job.start_iteration)
        driver = make_driver(
            job.params["api"],
            job.model_path,
            mnn_config(job.params),
            [(p.name, p.shape, p.dtype) for p in job.inputs],
            job.output_names,
        )
        inputs = make_inputs(job.inputs, job.seed)
        encode_message(
            self.ring,
            Hello(
                pid=os.getpid(),
                mnn_version=MNN.version(),
                numpy_version=np.__version__,
                python=sys.version.split()[0],
                executable=sys.executable,
            ),
        )
        done = self._loop(injector.wrap(driver), inputs, injector)
        encode_message(self.ring, Done(completed=done, stopped=self.stopping))
        return 0

    def _loop(self, driver: Any, inputs: list[Any], injector: faults.Injector) -> int:
        """The hot loop: kept free of anything that is not inference or recording. An
        MNNError is MNN's doing and becomes a row; any other exception is ours and ends it."""
        from stress.drivers import MNNError

        job, write = self.job, IterationWriter(self.ring).write
        stop_at = job.stop_iteration if job.stop_iteration is not None else faults.NEVER
        deadline = faults.NEVER
        if job.duration_s is not None:
            deadline = time.perf_counter_ns() + int(job.duration_s * 1e9)
        rss_every = int(job.rss_interval_s * 1e9)
        rss, rss_at = read_rss(), 0
        iteration = job.start_iteration
        clock, now = time.perf_counter_ns, time.time_ns
        while iteration < stop_at and not self.stopping:
            if iteration >= injector.first:
                injector.before(iteration)
            ts = now()
            if ts - rss_at > rss_every:
                rss, rss_at = read_rss(), ts
            start = clock()
            if start >= deadline:
                break
            try:
                rc, outputs = driver.infer(inputs)
                error = None
            except MNNError as exc:  # MNN raised: a finding, recorded as a row
                rc, outputs, error = -1, [], str(exc)
            latency = clock() - start
            status = STATUS_OK if rc == 0 else (STATUS_ERROR if error else STATUS_INVALID)
            write((iteration, ts, latency, rss, rc, 0, status), outputs, error)
            iteration += 1
        return iteration - job.start_iteration


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


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when the coordinator dies, however it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            print(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}", file=sys.stderr)
    except (OSError, AttributeError):
        print("prctl unavailable: this worker may outlive its coordinator", file=sys.stderr)


def main() -> int:
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
    worker = Worker(job, ring)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when we stop
    try:
        return worker.run()
    except Exception as exc:
        encode_message(ring, failure(exc))
        return EXIT_EXCEPTION


def failure(exc: Exception) -> Failure:
    """The last words for an exception: whose it was (MNN's or ours) and its traceback."""
    from stress.drivers import MNNError

    return Failure(
        origin="mnn" if isinstance(exc, MNNError) else "harness",
        exception=type(exc).__name__,
        message=str(exc),
        traceback=traceback.format_exc(),
        ring_bytes_needed=exc.needed if isinstance(exc, RecordTooLarge) else None,
    )


if __name__ == "__main__":
    sys.exit(main())
