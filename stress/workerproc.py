"""The coordinator's handle on one worker process: start it, read and decode its ring, stop
or kill it.

Workers are exec'd fresh (never forked from a process that has loaded MNN), in their own
process group so a terminal's Ctrl-C reaches only the coordinator. Their stdout and stderr
(MNN's chatter, faulthandler stacks) go to a log file per worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from stress import factors
from stress.contract import ring
from stress.contract.protocol import (
    KIND_ITERATION,
    Done,
    Failure,
    Hello,
    IterationRecord,
    Job,
    Message,
    ProtocolError,
    decode_iteration,
    decode_message,
)
from stress.contract.ring import COORDINATOR_PID_VAR
from stress.deaths import Ending, KillReason, python_stack
from stress.errors import StorageError
from stress.events import Event

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class WorkerProcess:
    """A running worker and its ring. ``progress_at`` is when the ring last moved."""

    def __init__(
        self, job: Job, log_path: Path, ring_capacity: int, python: str = sys.executable
    ) -> None:
        self.job = job
        self.log_path = log_path
        log = _open_log(log_path)  # StorageError: nothing more can be written there
        try:
            fd = ring.create(ring_capacity)  # OSError: no memory, or a file-size limit (memfd)
        except OSError:
            log.close()
            raise
        job.ring_fd = fd
        try:
            self.process = subprocess.Popen(
                # The variant and worker in the command line, so ``ps`` shows who is who.
                [python, "-m", "stress.worker", job.variant_id, f"w{job.worker_id}"],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(fd,),
                start_new_session=True,
                env=_worker_env(job.params),
                cwd=PACKAGE_ROOT,
            )
        except OSError:
            os.close(fd)
            raise
        finally:
            log.close()
        try:
            self.reader = ring.RingReader(fd)
            self.process.stdin.write(job.to_json().encode())
            self.process.stdin.close()
        except OSError:  # never leave a started worker unsupervised
            self.process.kill()
            self.process.wait()
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

    def read(self) -> tuple[list[IterationRecord], bool]:
        """Decode what was published since the last read: the iteration records, and whether
        anything at all was read (messages are kept: ``hello``, ``done``, ``failure``). Only
        decoding is guarded: a worker that scribbles on its ring is killed (``protocol``);
        what it published before stays valid."""
        if self.killed_for is KillReason.PROTOCOL:
            return [], False
        records: list[IterationRecord] = []
        try:
            published = self.reader.drain()
            if published:
                self.progress_at = time.monotonic()
            for kind, payload in published:
                if kind != KIND_ITERATION:
                    self._keep(decode_message(payload))
                elif self.hello is None:
                    raise ProtocolError("an iteration record before the worker's hello")
                else:
                    records.append(
                        decode_iteration(payload, len(self.job.output_names), self.threads)
                    )
        except (ring.CorruptRing, ProtocolError) as exc:
            self.protocol_error = f"{type(exc).__name__}: {exc}"
            self.kill(KillReason.PROTOCOL, dump_stack=False)
            return records, False
        return records, bool(published)

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
        """SIGKILL, after asking faulthandler for every thread's Python stack. A worker that
        already died on its own keeps its own cause of death."""
        if self.poll() is not None:
            return
        self.killed_for = reason
        if dump_stack and self.poll() is None:
            self._signal(signal.SIGUSR1)
            time.sleep(0.3)
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def ending_event(self, run_id: str, ending: Ending, in_flight: list[int | None]) -> Event:
        """The event for how this worker ended, with its stack and the tail of its log."""
        assert ending.kind is not None
        tail = self.log_tail()
        traceback = self.failure.traceback if self.failure else None
        return Event(
            run_id=run_id,
            scenario=self.job.scenario,
            variant_id=self.job.variant_id,
            worker_id=self.job.worker_id,
            pid=self.pid,
            kind=ending.kind,
            message=ending.message,
            iteration=min((i for i in in_flight if i is not None), default=None),
            in_flight=in_flight,
            params=self.job.params,
            signal=ending.signal,
            exit_code=self.poll(),
            stack=traceback or python_stack(tail),
            stderr_tail="\n".join(tail.splitlines()[-40:]),
            mnn_version=self.hello.mnn_version if self.hello else None,
        )

    def log_tail(self, max_bytes: int = 8192) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - max_bytes))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.reader.close()


def _open_log(path: Path) -> BinaryIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "ab")  # noqa: SIM115 - handed to the child, closed after the start
    except OSError as exc:
        raise StorageError.of(exc, path) from exc


def _worker_env(params: dict[str, Any]) -> dict[str, str]:
    """The coordinator's environment, what the factors add at launch, and ours."""
    env = {**os.environ, **factors.launch(params).env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env["PYTHONFAULTHANDLER"] = "1"
    env[COORDINATOR_PID_VAR] = str(os.getpid())
    return env
