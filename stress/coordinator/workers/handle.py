"""The coordinator's handle on one worker process: start it, read and decode its ring, stop
or kill it.

Workers are exec'd fresh (never forked from a process that has loaded MNN), in their own
process group so a terminal's Ctrl-C reaches only the coordinator. Their stdout and stderr
(MNN's chatter, faulthandler stacks) go to a log file per worker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from stress import SOURCE_ROOT, factors
from stress.contract import ring
from stress.contract.protocol import (
    KIND_ITERATION,
    Done,
    Failure,
    Hello,
    Job,
    Message,
    ProtocolError,
    decode_message,
)
from stress.contract.ring import COORDINATOR_PID_VAR, CORES_VAR
from stress.contract.stages import Launch
from stress.coordinator.workers import cgroups, forensics, logcap
from stress.coordinator.workers.deaths import Ending, KillReason, python_stack
from stress.errors import StorageError
from stress.factors.memcheck import XML_SUFFIX
from stress.memcheck.report import MemcheckError, read_errors
from stress.records.events import Event, EventKind
from stress.records.iteration_batch import Decoded, decode_run
from stress.records.rundir import RunLayout

DUMP_GRACE_S = 0.3  # for faulthandler to write every thread's Python stack before SIGKILL
# numpy's OpenBLAS starts a thread per core at import, spinning a while: 0.08 s of CPU a worker
# start for no use (a worker makes no BLAS call), and more threads in every native stack. What
# the user's environment or a factor sets wins.
QUIET_BLAS = {"OPENBLAS_NUM_THREADS": "1"}


class WorkerProcess:
    """A running worker and its ring. ``progress_at`` is when the ring last moved."""

    def __init__(
        self, job: Job, layout: RunLayout, ring_capacity: int, python: str | None = None
    ) -> None:
        """Start the worker of ``job``: its log and core folder where ``layout`` says."""
        self.job = job
        self.log_path = log_path = layout.worker_log(job.variant_id, job.worker_id)
        launch = factors.launch(job.params)
        self.memory_group: cgroups.MemoryGroup | None = None
        self.oom_killed = False
        self.interpreter = launch.python or python or sys.executable
        self.native_stack: str | None = None  # of a hung worker, taken before its kill
        self.attaching: forensics.Reading | None = None  # gdb on a hung worker, before its kill
        self.dump_stack = False
        self.kill_at: float | None = None  # when SIGKILL is due (after the Python stacks')
        self.core_dir = _core_dir(layout.core_dir(job.variant_id, job.worker_id))
        log = _open_log(log_path)  # StorageError: nothing more can be written there
        try:
            fd = ring.create(ring_capacity)  # OSError: no memory, or a file-size limit (memfd)
        except OSError:
            log.close()
            raise
        job.ring_fd = fd
        try:
            if launch.memory_limit_bytes is not None:
                self.memory_group = cgroups.MemoryGroup(
                    cgroups.group_name(job.variant_id, job.worker_id), launch.memory_limit_bytes
                )
            self.process = subprocess.Popen(
                _command(launch, self.interpreter, job, log_path),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(fd,),
                start_new_session=True,
                env=_worker_env(launch, cores=self.core_dir is not None),
                cwd=self.core_dir or SOURCE_ROOT,  # where a core file lands
            )
        except OSError:
            os.close(fd)
            self._leave_group()
            raise
        finally:
            log.close()
        try:
            if self.memory_group is not None:  # before the job: the worker waits for it
                self.memory_group.add(self.process.pid)
            self.reader = ring.RingReader(fd)
            self.process.stdin.write(job.to_json().encode())
            self.process.stdin.close()
        except OSError:  # never leave a started worker unsupervised
            self.process.kill()
            self.process.wait()
            self._leave_group()
            raise
        finally:
            os.close(fd)
        self.threads = int(job.params.get("threads", 1))  # record.thread must be below it
        self.started_at = self.progress_at = time.monotonic()
        self._position = 0
        self.killed_for: KillReason | None = None
        # What the worker said (its messages) and what we found wrong with what it wrote.
        self.hello: Hello | None = None
        self.hello_at: float | None = None
        self.done: Done | None = None
        self.failure: Failure | None = None
        self.protocol_error: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def read(self) -> tuple[list[Decoded], bool]:
        """Decode what was published since the last read: the iteration records (runs of one
        layout as batches), and whether anything at all was read (messages are kept:
        ``hello``, ``done``, ``failure``). Only decoding is guarded: a worker that scribbles on
        its ring is killed (``protocol``); what it published before stays valid."""
        if self.killed_for is KillReason.PROTOCOL:
            return [], False
        decoded: list[Decoded] = []
        try:
            runs = self.reader.drain_runs()
            if runs:
                self.progress_at = time.monotonic()
            for run in runs:
                if run.kind != KIND_ITERATION:
                    for payload in run.payloads():
                        self._keep(decode_message(payload))
                elif self.hello is None:
                    raise ProtocolError("an iteration record before the worker's hello")
                else:
                    decode_run(run, len(self.job.output_names), self.threads, decoded)
        except (ring.CorruptRing, ProtocolError) as exc:
            self.protocol_error = f"{type(exc).__name__}: {exc}"
            self.kill(KillReason.PROTOCOL, dump_stack=False)
            return decoded, False
        return decoded, bool(runs)

    def filling(self) -> bool:
        """Whether the last read found the ring over a quarter full: drain again soon."""
        return self.reader.last_drained > self.reader.capacity >> 2

    def _keep(self, message: Message) -> None:
        if isinstance(message, Hello):
            self.hello, self.hello_at = message, time.monotonic()
        elif isinstance(message, Done):
            self.done = message
        elif isinstance(message, Failure):
            self.failure = message

    def moved(self) -> bool:
        """True (and progress time updated) when the worker published anything since last asked."""
        position = self.reader.write_pos
        if position != self._position:
            self._position = position
            self.progress_at = time.monotonic()
            return True
        return False

    def poll(self) -> int | None:
        return self.process.poll()

    def request_stop(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self, reason: KillReason, dump_stack: bool = True) -> None:
        """SIGKILL, after asking faulthandler for every thread's Python stack, and for a hang
        gdb for every native one first. Never waits: ``step`` carries the kill on each round.
        A worker already being killed is killed at once, keeping its first reason; one that
        already died on its own keeps its own cause of death."""
        if self.poll() is not None:
            return
        if self.killed_for is not None:
            self._stop_attaching("the worker was killed at once")
            self.kill_at = 0.0
            self._signal(signal.SIGKILL)
            return
        self.killed_for, self.dump_stack = reason, dump_stack
        if reason is KillReason.HANG and forensics.unavailable() is None:
            self.attaching = forensics.attach(self.pid)
        self.step()

    def step(self) -> None:
        """Carry a kill on, never waiting: once gdb has the native stacks (or gave up),
        SIGUSR1 for the Python ones, then SIGKILL DUMP_GRACE_S later."""
        if self.killed_for is None or self.poll() is not None:
            return
        if self.attaching is not None:
            if not self.attaching.finished():
                return
            self.native_stack, self.attaching = self.attaching.result(), None
        now = time.monotonic()
        if self.kill_at is None:
            self.kill_at = now + DUMP_GRACE_S if self.dump_stack else now
            if self.dump_stack:
                self._signal(signal.SIGUSR1)
        if now >= self.kill_at:
            self._signal(signal.SIGKILL)

    def _stop_attaching(self, why: str) -> None:
        if self.attaching is not None:
            self.native_stack, self.attaching = self.attaching.stop(why), None

    def _signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def _event(self, run_id: str, kind: EventKind, message: str, **fields: Any) -> Event:
        """An event about this worker: who it was, and ``fields``."""
        return Event(
            run_id=run_id,
            scenario=self.job.scenario,
            variant_id=self.job.variant_id,
            worker_id=self.job.worker_id,
            pid=self.pid,
            kind=kind,
            message=message,
            params=self.job.params,
            mnn_version=self.hello.mnn_version if self.hello else None,
            **fields,
        )

    def ending_event(self, run_id: str, ending: Ending, in_flight: list[int | None]) -> Event:
        """The event for how this worker ended, with its stack and the tail of its log, at
        the time it ended; its native stack is ``read_native_stack``'s to find."""
        assert ending.kind is not None
        tail = self.log_tail()
        traceback = self.failure.traceback if self.failure else None
        return self._event(
            run_id,
            ending.kind,
            ending.message,
            iteration=min((i for i in in_flight if i is not None), default=None),
            in_flight=in_flight,
            signal=ending.signal,
            exit_code=self.poll(),
            stack=traceback or python_stack(tail),
            stderr_tail="\n".join(tail.splitlines()[-40:]),
            ts=time.time_ns(),
        )

    def read_native_stack(self, ending: Ending) -> str | forensics.Reading | None:
        """Every thread's native backtrace: taken before a hang's kill, or a reading of the
        core of a death by a signal started now (gdb at work); where there is none, why."""
        self._stop_attaching("the worker ended while gdb was attaching")
        if self.native_stack is not None or ending.signal is None:
            return self.native_stack
        if self.core_dir is None:
            return forensics.unavailable()
        return forensics.read_core(self.core_dir, self.interpreter, ending.signal)

    def memcheck_events(self, run_id: str) -> list[Event]:
        """One event per distinct error in valgrind's report (memcheck=on), with its native
        stacks; the report is deleted once read."""
        if self.job.params.get("memcheck") != "on":
            return []
        path = Path(f"{self.log_path}{XML_SUFFIX}")
        errors, more = read_errors(path)
        if more:
            errors.append(MemcheckError("more", f"{more} more distinct errors not kept", more, ""))
        with contextlib.suppress(OSError):
            path.unlink()
        message = "{0.kind}: {0.what} ({0.count}x)"
        return [
            self._event(run_id, EventKind.MEMCHECK, message.format(e), stack=e.stack)
            for e in errors
        ]

    def cap_log(self, max_bytes: int) -> int:
        """Keep the log under ``max_bytes`` (its head and tail); returns the bytes cut."""
        return logcap.cap(self.log_path, max_bytes)

    def log_tail(self, max_bytes: int = 8192) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - max_bytes))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        """After the worker was reaped: free its ring, and its memory group (noting first
        whether the kernel's OOM killer ended it there)."""
        self.reader.close()
        self._leave_group()

    def remove_core_dir(self) -> None:
        """After its event: the worker's folder for cores, with any core nobody read."""
        if self.core_dir is not None:
            shutil.rmtree(self.core_dir, ignore_errors=True)

    def _leave_group(self) -> None:
        if self.memory_group is not None:
            self.oom_killed = self.memory_group.oom_kills() > 0
            self.memory_group.remove()
            self.memory_group = None


def _open_log(path: Path) -> BinaryIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")  # noqa: SIM115 - handed to the child, closed after the start
    except OSError as exc:
        raise StorageError.of(exc, path) from exc


def _command(launch: Launch, interpreter: str, job: Job, log_path: Path) -> list[str]:
    """The worker's command line: under the launch's prefix (``{log}`` there is the worker's
    log path), with its interpreter (the factors', else the scenario's, else ours). The variant
    and worker are in it, so ``ps`` shows who is who."""
    prefix = [part.replace("{log}", str(log_path.absolute())) for part in launch.prefix]
    return [*prefix, interpreter, "-m", "stress.worker", job.variant_id, f"w{job.worker_id}"]


def _core_dir(folder: Path) -> Path | None:
    """``folder`` made, as the worker's working directory, where its core lands, when gdb can
    read cores here; else None (it runs in the package's folder)."""
    if forensics.unavailable() is not None:
        return None
    folder = folder.absolute()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


def _worker_env(launch: Launch, cores: bool = False) -> dict[str, str]:
    """The coordinator's environment over our quiet BLAS, what the factors add at launch, and
    ours."""
    env = {**QUIET_BLAS, **os.environ, **launch.env}
    if cores:
        env[CORES_VAR] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, env.get("PYTHONPATH")]))
    env["PYTHONFAULTHANDLER"] = "1"
    env[COORDINATOR_PID_VAR] = str(os.getpid())
    return env
