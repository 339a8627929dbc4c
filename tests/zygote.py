"""``python -m stress`` for the tests, without paying its imports every time.

Most of a short command's CPU goes to importing numpy, pyarrow, rich, click, pydantic and the
``stress`` package (~0.6 s of a 1.5 s run, and the suite starts hundreds of commands). A
*zygote* imports them once, then forks a child for each command: the child sets its argv,
environment, working directory and standard streams as the test asked, and runs the
``stress`` module as ``-m`` would (``runpy``). Everything after the imports is the real thing:
a real process with its own pid, signals, workers, exit status and atexit.

What the child cannot inherit is left out of the zygote or sends the command to a fresh
interpreter instead:
- ``stress.cli`` (its consoles look at the streams when imported), ``stress.worker`` and MNN
  (workers are fresh processes anyway), and DuckDB (its import starts a thread that a forked
  child would wait for at exit) are imported by the child itself;
- an environment that changes how an interpreter starts (``PYTHON*``, ``LANG``, ``LC_*``)
  gets a fresh interpreter, as does every command when ``MNN_STRESS_TEST_FRESH=1``.

One zygote per test process, started on first use, gone with it. Protocol, one connection per
command: the client sends a JSON line (argv, env, cwd) with its stdin/stdout/stderr passed as
descriptors; the zygote answers ``{"pid": N}``, then ``{"returncode": R}`` when the child ends.
"""

from __future__ import annotations

import array
import contextlib
import importlib
import io
import json
import os
import pkgutil
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

FRESH_VAR = "MNN_STRESS_TEST_FRESH"
# what the interpreter reads as it starts: a command whose environment differs in one of these
# from the zygote's runs in a fresh interpreter
_STARTUP_PREFIXES = ("PYTHON", "LC_", "LANG")
_PRELOAD = ("numpy", "pyarrow", "pyarrow.dataset", "pyarrow.compute", "pyarrow.parquet",
            "psutil", "click", "rich.console", "rich.live", "rich.table", "rich.text",
            "ruamel.yaml", "pydantic")  # fmt: skip
_NOT_PRELOADED = ("stress.cli", "stress.worker", "stress.__main__")


# ---- the zygote -------------------------------------------------------------------------


def _preload() -> None:
    from stress.cli.lean import keep_pandas_out

    keep_pandas_out()  # as the entry point does, before anything can import pandas
    for name in _PRELOAD:
        importlib.import_module(name)
    import stress

    for module in pkgutil.walk_packages(stress.__path__, "stress."):
        if not module.name.startswith(_NOT_PRELOADED):
            importlib.import_module(module.name)
    unsafe = [m for m in sys.modules if m.startswith(("duckdb", "MNN", "stress.cli."))]
    if set(unsafe) - {"stress.cli.lean"}:
        raise SystemExit(f"zygote: {unsafe} imported; a forked child would inherit them")


def _serve(path: str) -> dict | None:
    """Fork a child per request until the test process goes; returns the request in a child."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    parent = os.pidfd_open(os.getppid())
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(parent, selectors.EVENT_READ, "parent gone")
    print("ready", flush=True)
    while True:
        for key, _ in selector.select():
            if key.data == "parent gone":
                return None
            if key.data == "accept":
                connection, _ = listener.accept()
                request, fds = _receive(connection)
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    listener.close()
                    os.close(parent)
                    connection.close()
                    request["fds"] = fds
                    return request
                for fd in fds:
                    os.close(fd)
                _send(connection, {"pid": pid})
                selector.register(os.pidfd_open(pid), selectors.EVENT_READ, (pid, connection))
                continue
            child, connection = key.data
            selector.unregister(key.fd)
            os.close(key.fd)
            _, status = os.waitpid(child, 0)
            with contextlib.suppress(OSError):
                _send(connection, {"returncode": os.waitstatus_to_exitcode(status)})
            connection.close()


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        chunk, ancillary, _, _ = connection.recvmsg(1 << 16, socket.CMSG_SPACE(3 * fds.itemsize))
        if not chunk:
            raise EOFError("zygote: the client went away mid-request")
        data += chunk
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return json.loads(data), list(fds)


def _send(connection: socket.socket, message: dict) -> None:
    connection.sendall(json.dumps(message).encode() + b"\n")


def _become(request: dict) -> None:
    """In the child: the streams, environment, directory and argv the test asked for."""
    for target, fd in enumerate(request["fds"]):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    encoding, errors = sys.stdout.encoding, sys.stdout.errors
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding)
    sys.stdout = sys.__stdout__ = _writer(1, encoding, errors, line_buffered=os.isatty(1))
    sys.stderr = sys.__stderr__ = _writer(2, encoding, "backslashreplace", line_buffered=True)
    sys.argv = list(request["argv"])  # the module, then its arguments: runpy puts the
    # module's path in argv[0], as ``-m`` does


def _writer(fd: int, encoding: str, errors: str, line_buffered: bool) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw), encoding, errors, line_buffering=line_buffered, write_through=False
    )


def main() -> None:
    _preload()
    request = _serve(sys.argv[1])
    if request is None:  # the test process is gone: its socket's folder with it
        shutil.rmtree(os.path.dirname(sys.argv[1]), ignore_errors=True)
        return
    _become(request)
    import runpy

    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)


# ---- the client -------------------------------------------------------------------------


class _Zygote:
    """The test process's zygote: started on first use, ended with the test process."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="mnn-stress-zygote-")
        self.path = os.path.join(self.folder, "socket")
        self.env = dict(os.environ)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.zygote", self.path],
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.process.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise RuntimeError(f"the zygote did not start (exit {self.process.wait()})")

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a command with ``env`` starts as it would in a fresh interpreter."""
        if self.process.poll() is not None:
            return False
        keys = {k for k in {*env, *self.env} if k.startswith(_STARTUP_PREFIXES)}
        return all(env.get(k) == self.env.get(k) for k in keys)


_zygote: _Zygote | None = None


def _the_zygote() -> _Zygote | None:
    global _zygote
    if os.environ.get(FRESH_VAR) == "1":
        return None
    if _zygote is None:
        _zygote = _Zygote()
    return _zygote


class ZygoteProcess:
    """A command forked by the zygote, used as a ``subprocess.Popen`` (what the tests use of
    it: ``pid``, ``poll``, ``wait``, ``communicate``, signals, ``stdout``/``stderr`` pipes)."""

    def __init__(self, zygote: _Zygote, argv: list[str], env: dict, cwd: Path, text: bool):
        self.args = [sys.executable, "-m", *argv]
        self.returncode: int | None = None
        self.stdin = None
        ends: list[int] = []
        self.stdout = self._pipe(ends, text)
        self.stderr = self._pipe(ends, text)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(zygote.path)
        fds = array.array("i", [0, *ends])
        header = json.dumps({"argv": argv, "env": env, "cwd": str(cwd)}).encode() + b"\n"
        self._socket.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        for fd in ends:
            os.close(fd)
        self._received = b""
        self.pid: int = self._reply(None)["pid"]

    @staticmethod
    def _pipe(ends: list[int], text: bool) -> IO[Any]:
        read, write = os.pipe()
        ends.append(write)
        return open(read, "r" if text else "rb")  # noqa: SIM115 (closed by communicate)

    def _reply(self, timeout: float | None) -> dict | None:
        """The zygote's next message, or None when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._received:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._socket], [], [], left)[0]:
                return None
            chunk = self._socket.recv(1 << 16)
            if not chunk:  # the zygote itself is gone: the child's status with it
                return {"returncode": -signal.SIGKILL}
            self._received += chunk
        line, self._received = self._received.split(b"\n", 1)
        return json.loads(line)

    def poll(self) -> int | None:
        self._ended(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not self._ended(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode  # type: ignore[return-value]

    def _ended(self, timeout: float | None) -> bool:
        if self.returncode is None:
            reply = self._reply(timeout)
            if reply is None:
                return False
            self.returncode = reply["returncode"]
            self._socket.close()
        return True

    def communicate(self, input: None = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Both streams to their ends, then the status (``TimeoutExpired`` as Popen's)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        chunks: dict[int, list] = {}
        with selectors.DefaultSelector() as selector:
            for stream in (self.stdout, self.stderr):
                if stream is not None and not stream.closed:
                    selector.register(stream.fileno(), selectors.EVENT_READ, stream)
                    chunks[stream.fileno()] = []
            while selector.get_map():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                events = selector.select(left)
                if not events:
                    raise subprocess.TimeoutExpired(self.args, timeout or 0)
                for key, _ in events:
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        selector.unregister(key.fd)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(left)
        return self._decoded(self.stdout, chunks), self._decoded(self.stderr, chunks)

    @staticmethod
    def _decoded(stream: IO[Any] | None, chunks: dict[int, list]) -> Any:
        if stream is None or stream.closed:
            return None
        data = b"".join(chunks.get(stream.fileno(), []))
        text = isinstance(stream, io.TextIOBase)
        encoding = getattr(stream, "encoding", "utf-8")
        stream.close()
        if not text:
            return data
        return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")  # as Popen

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # never a pid the system gave to someone else since
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> ZygoteProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


def popen(argv: list[str], env: dict[str, str], cwd: Path, text: bool = True) -> Any:
    """``python -m ARGV`` with stdout and stderr piped: forked by the zygote where it can
    start the command as a fresh interpreter would, else a fresh interpreter."""
    zygote = _the_zygote()
    if zygote is not None and zygote.serves(env):
        return ZygoteProcess(zygote, argv, env, cwd, text)
    return subprocess.Popen(
        [sys.executable, "-m", *argv],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
    )


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> Any:
    """``subprocess.run(..., capture_output=True, text=True, timeout=...)`` through ``popen``."""
    process = popen(argv, env, cwd)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


if __name__ == "__main__":
    main()
