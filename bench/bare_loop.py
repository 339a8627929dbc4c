"""A bare Python loop making exactly the MNN calls the harness's drivers make, nothing else.

Usage: python bench/bare_loop.py API MODEL.mnn ITERATIONS  -> prints iterations/s as the
last stdout line (MNN itself prints a line to stdout on import).
"""

from __future__ import annotations

import sys
import time

import MNN
import MNN.expr as F
import numpy as np


def session_loop(
    path: str, names: list[str], arrays: list[np.ndarray], outputs: list[str], n: int
) -> float:
    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession({"numThread": 1})
    inputs = [interpreter.getSessionInput(session, name) for name in names]
    results = [interpreter.getSessionOutput(session, name) for name in outputs]
    hosts = [
        MNN.Tensor(
            r.getShape(),
            MNN.Halide_Type_Float,
            np.zeros(r.getShape(), np.float32),
            MNN.Tensor_DimensionType_Caffe,
        )
        for r in results
    ]
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
    runtime = MNN.nn.create_runtime_manager(({"numThread": 1},))
    module = MNN.nn.load_module_from_file(path, names, outputs, runtime_manager=runtime)
    start = time.perf_counter()
    for _ in range(n):
        variables = [F.const(a, list(a.shape), F.NCHW) for a in arrays]
        copies = [v.read().copy() for v in module.forward(variables)]
    del copies
    return n / (time.perf_counter() - start)


def main() -> None:
    api, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    info = MNN.nn.load_module_from_file(path, [], []).get_info()
    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession({"numThread": 1})
    names, outputs = list(info["inputNames"]), list(info["outputNames"])
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal(interpreter.getSessionInput(session, name).getShape()).astype(
            np.float32
        )
        for name in names
    ]
    loop = session_loop if api == "session" else module_loop
    print(f"{loop(path, names, arrays, outputs, n):.3f}")


if __name__ == "__main__":
    main()
