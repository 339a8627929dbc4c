"""Probe process: builds, converts and inspects models with MNN, away from the coordinator.

Run as ``python -m stress.models.probe ACTION ARGS... RESULT_JSON``. MNN writes to fd 1 and a
corrupt model can crash it, so the coordinator only ever reads the JSON file this leaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


def _dtype_name(halide_type: Any) -> str:
    from stress.worker.drivers.session import dtype_of

    return dtype_of(halide_type).name


def inspect(path: str) -> dict[str, Any]:
    """Names (in model order), shapes and dtypes of a model's inputs and outputs."""
    import MNN

    info = MNN.nn.load_module_from_file(path, [], []).get_info()
    interpreter = MNN.Interpreter(path)
    session = interpreter.createSession({"numThread": 1})
    session_inputs = interpreter.getSessionInputAll(session)
    session_outputs = interpreter.getSessionOutputAll(session)

    def describe(names: list[str], tensors: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": n,
                "shape": list(tensors[n].getShape()),
                "dtype": _dtype_name(tensors[n].getDataType()),
            }
            for n in names
            if n in tensors
        ]

    return {
        "inputs": describe(list(info["inputNames"]), session_inputs),
        "outputs": describe(list(info["outputNames"]), session_outputs),
        "mnn_version": MNN.version(),
    }


def build(name: str, out: str) -> dict[str, Any]:
    from stress.models.builtin import BUILTINS

    BUILTINS[name].build(out)
    return inspect(out)


# The wheel's converter itself: its ``mnnconvert`` command (MNN.tools.mnnconvert) runs
# ``pip install aliyun-log-python-sdk`` with whatever pip is on PATH and, once that is
# installed, uploads the machine id and the converter's arguments. ``_tools.mnnconvert`` is
# the same converter without either. It returns True even when it failed: the output file
# and its "Converted Success!" line are what tell.
_CONVERT = "import sys, _tools; sys.exit(0 if _tools.mnnconvert(sys.argv) else 1)"


def convert(onnx_path: str, out: str, *options: str) -> dict[str, Any]:
    """Convert ONNX to MNN with the converter in the MNN wheel, in a directory of its own:
    it keeps its weights in ``./.__convert_external_data.bin`` while it works, and a second
    conversion in the same directory deletes that file and silently zeroes the first's
    weights (seen with MNN 3.6.1). ``options`` are further converter flags (``--fp16``)."""
    args = ["-f", "ONNX", "--modelFile", os.path.abspath(onnx_path)]
    args += ["--MNNModel", os.path.abspath(out), "--bizCode", "stress", *options]
    with tempfile.TemporaryDirectory(prefix="mnn-stress-convert-") as workdir:
        done = subprocess.run(
            [sys.executable, "-c", _CONVERT, *args],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=workdir,
        )
    written = os.path.exists(out) and os.path.getsize(out) > 0
    if done.returncode != 0 or not written or "Converted Success" not in done.stdout:
        raise RuntimeError(
            f"MNN's converter failed ({done.returncode}): {done.stdout[-2000:]}"
            f"{done.stderr[-2000:]}"
        )
    return inspect(out)


def backends(path: str) -> dict[str, Any]:
    """The backends this MNN wheel really has: ``createRuntime`` says which runtimes exist
    (``createSession`` would silently fall back to the CPU)."""
    import MNN

    from stress.factors.mnn_knobs import BACKENDS

    interpreter = MNN.Interpreter(path)
    found = []
    for name in BACKENDS:
        runtime = interpreter.createRuntime(({"backend": name.upper()},))
        if runtime is not None and runtime[1][0]:
            found.append(name)
    return {"backends": found, "mnn_version": MNN.version()}


def main(argv: list[str]) -> int:
    action, *args, result_path = argv
    try:
        result = {
            "ok": True,
            **{"build": build, "convert": convert, "inspect": inspect, "backends": backends}[
                action
            ](*args),
        }
    except Exception as exc:  # reported to the coordinator as a ModelError
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(result_path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
