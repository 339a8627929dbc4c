"""A bare Python loop making exactly the MNN calls the harness's drivers make, nothing else.

Usage: python bench/bare_loop.py API MODEL.mnn ITERATIONS [THREADS [SHARING]]
  -> prints iterations/s as the last stdout line (MNN itself prints a line to stdout on import).

ITERATIONS is per thread, as in a scenario. With one thread (the default) the rate is
ITERATIONS over the loop's time. With THREADS > 1 every thread builds its objects, waits for
the others, then runs its own loop, noting each iteration's start time; the rate is the total
iterations/s over all threads while all of them ran (bench/steady.py), as overhead.py takes the
harness's. SHARING is what the threads share, as the harness's ``sharing`` factor: Session API
own (an Interpreter and session each) | interpreter (one Interpreter, a session each) | session
(one session); Module API own (a runtime manager and module each) | module (one module) | clone
(one module, clone()d per thread).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import MNN
import MNN.expr as F
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from steady import window_rate  # noqa: E402

CONFIG = {"numThread": 1}
SHARING = {"session": ("own", "interpreter", "session"), "module": ("own", "module", "clone")}


def host_tensors(results: list[Any]) -> list[Any]:
    """NCHW float32 host tensors to copy the session's outputs into (set-up, not timed)."""
    caffe = MNN.Tensor_DimensionType_Caffe
    return [
        MNN.Tensor(r.getShape(), MNN.Halide_Type_Float, np.zeros(r.getShape(), np.float32), caffe)
        for r in results
    ]


def session_loop(
    path: str, names: list[str], arrays: list[np.ndarray], outputs: list[str], n: int
) -> float:
    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession(CONFIG)
    inputs = [interpreter.getSessionInput(session, name) for name in names]
    results = [interpreter.getSessionOutput(session, name) for name in outputs]
    hosts = host_tensors(results)
    start = time.perf_counter()
    for _ in range(n):
        for tensor, array in zip(inputs, arrays):
            tensor.copyFrom(
                MNN.Tensor(
                    array.shape, MNN.Halide_Type_Float, array, MNN.Tensor_DimensionType_Caffe
                )
            )
        interpreter.runSession(session)
        for result, host in zip(results, hosts):
            result.copyToHostTensor(host)
        copies = [host.getNumpyData().copy() for host in hosts]
    del copies
    return n / (time.perf_counter() - start)


def module_loop(
    path: str, names: list[str], arrays: list[np.ndarray], outputs: list[str], n: int
) -> float:
    runtime = MNN.nn.create_runtime_manager((CONFIG,))
    module = MNN.nn.load_module_from_file(path, names, outputs, runtime_manager=runtime)
    start = time.perf_counter()
    for _ in range(n):
        variables = [F.const(a, list(a.shape), F.NCHW) for a in arrays]
        copies = [v.read().copy() for v in module.forward(variables)]
    del copies
    return n / (time.perf_counter() - start)


class Shared:
    """What the threads share (built on the main thread, as the harness's engines do), and a
    lock that serialises each thread's set-up (not its iterations)."""

    def __init__(self, api: str, sharing: str, path: str, names: list[str], outputs: list[str]):
        self.sharing = sharing
        self.lock = threading.Lock()
        self.interpreter: Any = None
        self.session: Any = None
        self.module: Any = None
        if api == "session" and sharing in ("interpreter", "session"):
            self.interpreter = MNN.Interpreter(path)
            if sharing == "session":
                self.session = self.interpreter.createSession(CONFIG)
        if api == "module" and sharing in ("module", "clone"):
            runtime = MNN.nn.create_runtime_manager((CONFIG,))
            self.module = MNN.nn.load_module_from_file(
                path, names, outputs, runtime_manager=runtime
            )


def session_thread(
    shared: Shared,
    path: str,
    names: list[str],
    arrays: list[np.ndarray],
    outputs: list[str],
    n: int,
    ready: threading.Barrier,
    stamps: list[int],
) -> None:
    with shared.lock:
        interpreter = shared.interpreter or MNN.Interpreter(path)
        session = shared.session or interpreter.createSession(CONFIG)
        inputs = [interpreter.getSessionInput(session, name) for name in names]
        results = [interpreter.getSessionOutput(session, name) for name in outputs]
        hosts = host_tensors(results)
    stamp, clock = stamps.append, time.perf_counter_ns
    ready.wait()
    for _ in range(n):
        stamp(clock())
        for tensor, array in zip(inputs, arrays):
            tensor.copyFrom(
                MNN.Tensor(
                    array.shape, MNN.Halide_Type_Float, array, MNN.Tensor_DimensionType_Caffe
                )
            )
        interpreter.runSession(session)
        for result, host in zip(results, hosts):
            result.copyToHostTensor(host)
        copies = [host.getNumpyData().copy() for host in hosts]
    del copies


def module_thread(
    shared: Shared,
    path: str,
    names: list[str],
    arrays: list[np.ndarray],
    outputs: list[str],
    n: int,
    ready: threading.Barrier,
    stamps: list[int],
) -> None:
    with shared.lock:
        if shared.module is None:
            runtime = MNN.nn.create_runtime_manager((CONFIG,))
            module = MNN.nn.load_module_from_file(path, names, outputs, runtime_manager=runtime)
        elif shared.sharing == "clone":
            module = shared.module.clone()
        else:
            module = shared.module
    stamp, clock = stamps.append, time.perf_counter_ns
    ready.wait()
    for _ in range(n):
        stamp(clock())
        variables = [F.const(a, list(a.shape), F.NCHW) for a in arrays]
        copies = [v.read().copy() for v in module.forward(variables)]
    del copies


def threaded(
    api: str,
    sharing: str,
    path: str,
    names: list[str],
    arrays: list[np.ndarray],
    outputs: list[str],
    n: int,
    threads: int,
) -> float:
    """THREADS loops of N iterations each, started together; total iterations/s (steady)."""
    shared = Shared(api, sharing, path, names, outputs)
    body = session_thread if api == "session" else module_thread
    ready = threading.Barrier(threads)
    stamps: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            body(shared, path, names, arrays, outputs, n, ready, stamps[index])
        except BaseException as exc:
            errors.append(exc)
            ready.abort()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return window_rate([np.array(s, dtype=np.int64) for s in stamps])


def main() -> None:
    api, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    sharing = sys.argv[5] if len(sys.argv) > 5 else "own"
    if api not in SHARING or sharing not in SHARING[api] or threads < 1:
        sys.exit(f"usage: {sys.argv[0]} session|module MODEL N [THREADS [SHARING]]: {SHARING}")
    info = MNN.nn.load_module_from_file(path, [], []).get_info()
    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession(CONFIG)
    names, outputs = list(info["inputNames"]), list(info["outputNames"])
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal(interpreter.getSessionInput(session, name).getShape()).astype(
            np.float32
        )
        for name in names
    ]
    if threads == 1 and sharing == "own":
        loop = session_loop if api == "session" else module_loop
        rate = loop(path, names, arrays, outputs, n)
    else:
        rate = threaded(api, sharing, path, names, arrays, outputs, n, threads)
    print(f"{rate:.3f}")


if __name__ == "__main__":
    main()
