"""Standalone reproduction of one mnn-stress variant: MNN, numpy and the standard library only.

Written by ``mnn-stress repro``: SETTINGS says which model, inputs and MNN settings the variant
ran with, and what the run saw. The script runs the same calls (Session API: Interpreter,
createSession, copyFrom, runSession, copyToHostTensor; Module API: load_module_from_file,
forward, read) in the same number of Python threads sharing the same objects, and checks each
iteration's outputs for what the run saw as it ends (keeping counts and digests, not outputs:
memory does not grow with the iterations). The model (and any input files) lie beside the
script: keep them together.
Exit status 1: reproduced; 0: not reproduced; a crash ends the process by its signal, as it did
in the run; 3: MNN raised while setting up; 4: a file the script needs is not beside it.
"""

import base64
import contextlib
import hashlib
import io
import os
import sys
import threading
import traceback
import zlib

import numpy as np

SETTINGS: dict = {}  # filled in by mnn-stress repro
SETUP_RAISED = 3  # exit status when MNN raised before the first iteration
FILE_MISSING = 4  # exit status when the model or an input file is not beside the script
SCRIPT_FAILED = 5  # exit status when the script itself raised
HERE = os.path.dirname(os.path.abspath(__file__))


def beside(name: str) -> str:
    """A file the script needs, named relative to the script's own folder."""
    return os.path.join(HERE, name)


def missing_files() -> list:
    names = [SETTINGS["model"]] + [s["file"] for s in SETTINGS["inputs"] if s.get("file")]
    return [beside(name) for name in names if not os.path.isfile(beside(name))]


# --- inputs: the same bytes as the run's, from its seed ------------------------------------
def make_input(spec: dict, seed: int) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if spec.get("file"):
        data = np.load(beside(spec["file"]), allow_pickle=False)
        return np.ascontiguousarray(data[spec["name"]] if hasattr(data, "files") else data)
    rng = np.random.default_rng([seed, zlib.crc32(spec["name"].encode())])
    shape, kind = spec["shape"], spec["distribution"]
    if kind == "large":
        values = _large(rng, shape, dtype)
    elif kind == "denormal":
        values = _denormal(rng, shape, dtype)
    else:
        draw = {
            "normal": lambda: rng.standard_normal(shape),
            "uniform": lambda: rng.uniform(-1.0, 1.0, shape),
            "zeros": lambda: np.zeros(shape),
            "ones": lambda: np.ones(shape),
        }[kind]
        values = draw() * spec["scale"]
        values = np.round(values) if dtype.kind in "iu" else values
    return np.ascontiguousarray(values.astype(dtype))


def _large(rng, shape, dtype):
    if dtype.kind == "f":
        return np.clip(rng.standard_normal(shape), -8.0, 8.0) * (float(np.finfo(dtype).max) / 8)
    info = np.iinfo(dtype)
    quarter = (int(info.max) - int(info.min) + 1) // 4
    values = rng.integers(quarter, 2 * quarter, shape, dtype=np.int64)
    return values * rng.choice([-1, 1], shape) if info.min < 0 else values


def _denormal(rng, shape, dtype):
    if dtype.kind in "iu":
        return np.zeros(shape, dtype)
    bits = np.dtype(f"uint{dtype.itemsize * 8}")
    mantissa = rng.integers(1, 1 << np.finfo(dtype).nmant, shape, dtype=bits)
    sign = rng.integers(0, 2, shape, dtype=bits) << (dtype.itemsize * 8 - 1)
    return (mantissa | sign).view(dtype.newbyteorder("="))


# --- the two APIs ---------------------------------------------------------------------------
class Session:
    """One thread's session; ``shared`` holds what the threads share (sharing)."""

    def __init__(self, mnn, shared: dict) -> None:
        self.MNN, self.shared = mnn, shared
        self.halide = [
            getattr(mnn, f"Halide_Type_{SETTINGS['halide'][s['name']]}") for s in SETTINGS["inputs"]
        ]
        self.renew("interpreter")

    def renew(self, level: str) -> None:
        sharing, config = SETTINGS["sharing"], SETTINGS["config"]
        if sharing in ("interpreter", "session") and "interpreter" in self.shared:
            self.interpreter, self.runtime = self.shared["interpreter"], self.shared["runtime"]
        elif level == "interpreter" or not hasattr(self, "interpreter"):
            self.interpreter = self.MNN.Interpreter(beside(SETTINGS["model"]))
            # session_per_iteration, as the harness runs it (the original report's pattern):
            # sessions on a runtime of their Interpreter's, their outputs kept (saveTensors)
            with_runtime = SETTINGS["lifecycle"] == "session_per_iteration"
            self.runtime = self.interpreter.createRuntime((config,)) if with_runtime else None
            self.shared.setdefault("interpreter", self.interpreter)
            self.shared.setdefault("runtime", self.runtime)
        if sharing == "session" and "session" in self.shared:
            self.session = self.shared["session"]
        else:
            self.session = self.new_session(config)
            self.shared.setdefault("session", self.session)
        # As the harness does when it builds a session: the thread's handles on its tensors,
        # taken once (an unknown output name raises here).
        self.inputs = [
            self.interpreter.getSessionInput(self.session, s["name"]) for s in SETTINGS["inputs"]
        ]
        self.outputs = [
            self.interpreter.getSessionOutput(self.session, name) for name in SETTINGS["outputs"]
        ]

    def new_session(self, config: dict):
        if self.runtime is None:
            return self.interpreter.createSession(config)
        saved = {**config, "saveTensors": tuple(SETTINGS["outputs"])}
        return self.interpreter.createSession(saved, self.runtime[0])

    def feed(self, inputs: list) -> None:
        """The inputs into the session's tensors, as the run handed them (or misused the API)."""
        MNN, misuse = self.MNN, SETTINGS["misuse"]
        caffe = MNN.Tensor_DimensionType_Caffe
        if misuse in WRONG_SESSION_CALLS:  # a wrong call in place of copyFrom(MNN.Tensor(...))
            for tensor, array in zip(self.inputs, inputs):
                WRONG_SESSION_CALLS[misuse](MNN, tensor, array)
            return
        for tensor, halide, (shape, data) in zip(self.inputs, self.halide, host_data(inputs)):
            tensor.copyFrom(MNN.Tensor(shape, halide, data, caffe))
        if misuse == "extra_input":  # one more, under a name the model lacks
            extra = self.interpreter.getSessionInput(self.session, SETTINGS["unknown_name"])
            extra.copyFrom(MNN.Tensor(list(inputs[0].shape), self.halide[0], inputs[0], caffe))

    def iteration(self, inputs: list, write: bool) -> tuple:
        MNN = self.MNN
        if write:
            self.feed(inputs)
        rc = self.interpreter.runSession(self.session)
        outputs = []
        for name, tensor in zip(SETTINGS["outputs"], self.outputs):
            shape = tuple(tensor.getShape())
            zeros = np.zeros(shape, SETTINGS["output_dtypes"].get(name, "float32"))
            host = MNN.Tensor(shape, tensor.getDataType(), zeros, MNN.Tensor_DimensionType_Caffe)
            tensor.copyToHostTensor(host)
            outputs.append(np.array(host.getNumpyData(), copy=True))
        return rc, outputs


WRONG_SESSION_CALLS = {  # misuse: (MNN, session input tensor, array)
    "from_numpy": lambda MNN, tensor, array: tensor.fromNumpy(array),
    "bare_ndarray": lambda MNN, tensor, array: tensor.copyFrom(array),
    "untyped_tensor": lambda MNN, tensor, array: tensor.copyFrom(MNN.Tensor(array)),
}


def host_data(inputs: list) -> list:
    """(shape, data) of each host tensor the run made: NCHW, or as its misuse has them (the
    last input missing, each flattened to rank 1, or float64)."""
    misuse = SETTINGS["misuse"]
    if misuse == "missing_input":
        inputs = inputs[:-1]
    if misuse == "wrong_rank":
        inputs = [array.reshape(-1) for array in inputs]
    if misuse == "wrong_dtype":
        inputs = [array.astype(np.float64) for array in inputs]
    return [(list(array.shape), array) for array in inputs]


class Module:
    def __init__(self, mnn, shared: dict) -> None:
        self.MNN, self.shared = mnn, shared
        self.renew("module")

    def load(self):
        runtime = self.MNN.nn.create_runtime_manager((SETTINGS["config"],))
        names = [spec["name"] for spec in SETTINGS["inputs"]]
        return self.MNN.nn.load_module_from_file(
            beside(SETTINGS["model"]), names, SETTINGS["outputs"], runtime_manager=runtime
        )

    def renew(self, level: str) -> None:
        sharing = SETTINGS["sharing"]
        if sharing in ("module", "clone"):
            if "module" not in self.shared:
                self.shared["module"] = self.load()
            module = self.shared["module"]
            self.module = module.clone() if sharing == "clone" else module
        else:
            self.module = self.load()

    def iteration(self, inputs: list, write: bool) -> tuple:
        F = self.MNN.expr
        if write or not hasattr(self, "variables"):
            self.variables = module_variables(F, inputs)
        outputs = self.module.forward(self.variables)
        if outputs is None or len(outputs) != len(SETTINGS["outputs"]):
            return -1, []
        converted = [F.convert(v, F.NCHW) if v.data_format == F.NC4HW4 else v for v in outputs]
        return 0, [np.array(v.read(), copy=True) for v in converted]


def module_variables(F, inputs: list):
    """What ``forward`` gets: a const per input, or as the run's misuse had it (the last
    missing, the first again at the end, each flattened to rank 1, float64 data, or the first
    array itself instead of a list)."""
    misuse = SETTINGS["misuse"]
    if misuse == "bare_ndarray":
        return inputs[0]
    if misuse == "wrong_rank":
        inputs = [array.reshape(-1) for array in inputs]
    if misuse == "wrong_dtype":
        inputs = [array.astype(np.float64) for array in inputs]
    types = [_expr_type(F, spec["dtype"]) for spec in SETTINGS["inputs"]]
    variables = [F.const(a, list(a.shape), F.NCHW, kind) for a, kind in zip(inputs, types)]
    if misuse == "missing_input":
        return variables[:-1]
    if misuse == "extra_input":
        return [*variables, F.const(inputs[0], list(inputs[0].shape), F.NCHW, types[0])]
    return variables


def _expr_type(F, dtype):
    return {"float32": F.float, "int32": F.int, "uint8": F.uint8}[np.dtype(dtype).name]


# --- the loop, with the run's test-only fault if it had one --------------------------------
def apply_fault(iteration: int, rc: int, outputs: list) -> tuple:
    fault = SETTINGS.get("fault")
    if not fault or not (
        iteration == fault["at"] or (fault["repeats"] and iteration > fault["at"])
    ):
        return rc, outputs
    kind = fault["kind"]
    if kind == "segv":
        import ctypes

        ctypes.string_at(0)
    if kind == "abort":
        import os

        os.abort()
    if kind == "rc":
        return 7, outputs
    if kind in ("perturb", "ulp", "nan") and outputs:
        changed = outputs[0].copy().reshape(-1)
        if kind == "nan":
            changed[0] = np.nan
        elif kind == "perturb" or changed.dtype.kind != "f":
            changed[0] += 1
        else:
            changed[0] = np.nextafter(changed[0], np.inf if changed[0] >= 0 else -np.inf)
        outputs = [changed.reshape(outputs[0].shape), *outputs[1:]]
    return rc, outputs


def run_thread(runner, inputs: list, tally: "Tally", lock: threading.Lock) -> None:
    """One thread's loop; with caller_lock=all, each whole iteration under the caller's lock."""
    whole = lock if SETTINGS["caller_lock"] == "all" else contextlib.nullcontext()
    for iteration in range(SETTINGS["iterations"]):
        write = iteration == 0 or SETTINGS["inputs_written"] == "every_run"
        try:
            with whole:
                begin(runner, iteration, lock)
                rc, outputs = runner.iteration(inputs, write)
            rc, outputs = apply_fault(iteration, rc, outputs)
        except Exception as exc:  # MNN raised
            print(f"repro: MNN raised: {type(exc).__name__}: {exc}", file=sys.stderr)
            tally.add("error", [])
            continue
        tally.add("ok" if rc == 0 else "invalid", outputs)


def begin(runner, iteration: int, lock: threading.Lock) -> None:
    """A new session, Interpreter or module for each iteration after the first (lifecycle);
    with caller_lock=setup, under the caller's lock. The threads' first objects need no lock
    here: the main thread makes them one after the other."""
    lifecycle = SETTINGS["lifecycle"]
    if iteration == 0 or lifecycle == "reuse":
        return
    level = "interpreter" if lifecycle == "interpreter_per_iteration" else "session"
    with lock if SETTINGS["caller_lock"] == "setup" else contextlib.nullcontext():
        runner.renew(level)


# --- what the run saw, checked as it goes ---------------------------------------------------
def reference() -> dict:
    """The clean reference outputs by name ({} without a reference)."""
    if not SETTINGS.get("reference"):
        return {}
    data = np.load(io.BytesIO(base64.b64decode(SETTINGS["reference"])), allow_pickle=False)
    return {name: data[name] for name in data.files}


def beyond_tolerance(actual: np.ndarray, expected: np.ndarray) -> bool:
    t = SETTINGS["tolerance"]
    if actual.shape != expected.shape or not np.isfinite(actual).all():
        return True
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    magnitude = np.abs(expected.astype(np.float64))
    if t["statistic"] == "mnn":
        return diff.max(initial=0) > t["atol"] + t["rtol"] * max(magnitude.max(initial=0), 1e-4)
    if t["statistic"] == "elementwise":
        return bool((diff > t["atol"] + t["rtol"] * magnitude).any())
    relative = np.where(magnitude > 0, diff / np.where(magnitude > 0, magnitude, 1), np.inf)
    relative = np.where(diff == 0, 0.0, relative)
    stat = {
        "max": np.max,
        "mean": np.mean,
        "quantile": lambda a: np.quantile(a, t["quantile"]),
    }[t["statistic"]]
    return not (stat(diff) <= t["atol"] or stat(relative) <= t["rtol"])


class Tally:
    """One thread's findings: counts, and per output the digests of the distinct bytes seen.
    Each iteration's outputs are checked as it ends and dropped: memory grows with the number
    of distinct outputs (a digest each), not with the iterations."""

    def __init__(self, expected: dict, sampling: bool = False) -> None:
        self.expected = expected  # the reference outputs by name, read only
        self.counts = dict.fromkeys(("iterations", "invalid", "error", "non_finite", "mismatch"), 0)
        self.distinct: list = [set() for _ in SETTINGS["outputs"]]
        self.judged: dict = {}  # (index, digest, shape, dtype) -> (non_finite, mismatch)
        self.rss: list | None = [] if sampling else None  # the process's, after each iteration

    def add(self, status: str, outputs: list) -> None:
        """One iteration: "ok" with its outputs, or "invalid" / "error" (outputs unchecked)."""
        self.counts["iterations"] += 1
        if self.rss is not None:
            self.rss.append(resident_bytes())
        if status != "ok":
            self.counts[status] += 1
            return
        verdicts = [self.judge(i, output) for i, output in enumerate(outputs)]
        self.counts["non_finite"] += any(non_finite for non_finite, _ in verdicts)
        self.counts["mismatch"] += any(mismatch for _, mismatch in verdicts)

    def judge(self, index: int, output: np.ndarray) -> tuple:
        """(non-finite, beyond the tolerance) for the output at ``index``; bytes seen before
        are not judged again."""
        if index >= len(self.distinct):
            return False, False
        digest = hashlib.blake2b(np.ascontiguousarray(output)).digest()
        self.distinct[index].add(digest)
        key = (index, digest, output.shape, output.dtype.str)
        if key not in self.judged:
            expected = self.expected.get(SETTINGS["outputs"][index])
            mismatch = expected is not None and beyond_tolerance(output, expected)
            self.judged[key] = (not np.isfinite(output).all(), mismatch)
        return self.judged[key]


def found(tallies: list) -> dict:
    """What happened over all threads, per failure kind the run can grade."""
    total = {kind: sum(t.counts[kind] for t in tallies) for kind in tallies[0].counts}
    distinct = [
        set().union(*(t.distinct[i] for t in tallies)) for i in range(len(SETTINGS["outputs"]))
    ]
    inconsistent = max([len(digests) - 1 for digests in distinct] + [0])
    mismatch = total.pop("mismatch")
    leak = int(bool(tallies[0].rss) and leaked(tallies[0].rss))
    return {**total, "inconsistent": inconsistent, "mismatch": mismatch, "leak": leak}


def resident_bytes() -> int:
    """This process's resident memory (Linux; 0 elsewhere: no leak is then seen)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except OSError:
        return 0


PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def leaked(rss: list) -> bool:
    """Resident memory grew as the run's leak rule says: after a warm-up, the medians of the
    first and last thirds of the samples apart by half the least growth, at a rate beyond the
    least per 1,000 iterations (mnn-stress's ``analysis.drift``)."""
    rule = SETTINGS["leak"]
    skip = max(rule["warmup_min"], int(len(rss) * rule["warmup_fraction"]))
    fitted = rss[skip:]
    third = len(fitted) // 3
    if third < rule["min_fitted"] // 3 or not fitted[0]:
        return False
    early, late = sorted(fitted[:third]), sorted(fitted[-third:])
    growth = late[third // 2] - early[third // 2]
    per_1k = growth / (len(fitted) - third) * 1000
    print(
        f"repro: resident memory grew {growth / 2**20:+.1f} MiB from the first to the last third "
        f"of the iterations ({per_1k / 2**20:+.2f} MiB per 1,000)",
        flush=True,
    )
    return 2 * growth >= rule["min_growth"] and per_1k > rule["per_1k"]


def main() -> int:
    missing = missing_files()
    if missing:
        for path in missing:
            print(f"repro: file not found: {path} (keep it beside this script)", flush=True)
        return FILE_MISSING
    import MNN  # prints its banner to stdout

    inputs = [make_input(spec, SETTINGS["seed"]) for spec in SETTINGS["inputs"]]
    shared: dict = {}
    kind = Session if SETTINGS["api"] == "session" else Module
    try:
        runners = [kind(MNN, shared) for _ in range(SETTINGS["threads"])]
    except Exception as exc:  # MNN raised while loading or setting up
        print(f"repro: MNN raised while setting up: {type(exc).__name__}: {exc}", flush=True)
        return SETUP_RAISED
    expected = reference()
    tallies = [Tally(expected, sampling=index == 0) for index in range(len(runners))]
    lock = threading.Lock()
    threads = [
        threading.Thread(target=run_thread, args=(runner, inputs, tally, lock))
        for runner, tally in zip(runners, tallies)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = found(tallies)
    print("repro:", counts, flush=True)
    looked_for = SETTINGS["looking_for"]
    seen = [kind for kind in looked_for if counts.get(kind, 0)]
    unseen = [kind for kind in looked_for if kind not in seen]
    said = f"REPRODUCED {', '.join(seen)}" if seen else "not seen"
    if seen and unseen:
        said += f" (not seen: {', '.join(unseen)})"
    print(f"repro: looked for {', '.join(looked_for)}: {said}", flush=True)
    return 1 if seen else 0


def guarded() -> int:
    """``main``, with a failure of the script itself told apart from a reproduction (Python
    exits 1 on an uncaught exception, which is what "reproduced" exits with)."""
    try:
        return main()
    except Exception:
        traceback.print_exc()
        print("repro: the script itself failed (above): neither reproduced nor not", flush=True)
        return SCRIPT_FAILED


if __name__ == "__main__":
    sys.exit(guarded())
