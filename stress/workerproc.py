"""The coordinator's handle on one worker process: start it, read its ring, stop or kill it.

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

from stress import ring
from stress.deaths import KillReason
from stress.protocol import Job
from stress.ring import COORDINATOR_PID_VAR

PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class WorkerProcess:
    """A running worker and its ring. ``progress_at`` is when the ring last moved."""

    def __init__(
        self, job: Job, log_path: Path, ring_capacity: int, python: str = sys.executable
    ) -> None:
        fd = ring.create(ring_capacity)  # OSError: no memory, or a file-size limit (memfd)
        job.ring_fd = fd
        self.job = job
        self.log_path = log_path
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [python, "-m", "stress.worker"],
                    stdin=subprocess.PIPE,
                    stdout=log,
                    stderr=log,
                    pass_fds=(fd,),
                    start_new_session=True,
                    env=_worker_env(),
                    cwd=PACKAGE_ROOT,
                )
            self.reader = ring.RingReader(fd)
        finally:
            os.close(fd)
        self.process.stdin.write(job.to_json().encode())
        self.process.stdin.close()
        self.started_at = self.progress_at = time.monotonic()
        self._position = 0
        self.killed_for: KillReason | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def drain(self) -> list[tuple[int, bytes]]:
        records = self.reader.drain()
        if records:
            self.progress_at = time.monotonic()
        return records

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

    def log_tail(self, max_bytes: int = 8192) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - max_bytes))
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.reader.close()


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env["PYTHONFAULTHANDLER"] = "1"
    env[COORDINATOR_PID_VAR] = str(os.getpid())
    return env
