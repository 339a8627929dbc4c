"""Test-only fault injection inside a worker, to prove that deaths are survived and that every
wrong result is detected and counted.

Enabled only by the environment variable ``MNN_STRESS_TEST_FAULT`` in the coordinator's
environment (no scenario key can set it). Syntax: ``KIND@N`` fires at iteration N, ``KIND@N+``
at every iteration from N on, in every thread of the worker, or only in thread T with
``KIND@N/T``; ``?FACTOR=VALUE`` at the end limits it to the variants with that factor value
(``perturb@0+?threads=2``); several faults are separated by commas (``nan@3,rc@5/1``).

Kinds that end or upset the worker, before the iteration: segv (a real invalid memory read),
abort, hang, raise (an exception in harness code), exit, corrupt (publish a record no worker
could write), invalid_read (reads 8 bytes of a freed heap block: harmless, but memcheck sees
it). Kinds that change what the driver returns: perturb (one output element changed
by +1), ulp (one output element moved by one unit in the last place: still close), nan (one
output element made NaN), leak (256 KiB allocated, touched and kept: resident memory grows),
slow (a sleep that grows by 50 us at each firing: latency drifts), rc (a non-zero return
code), mnn_raise (a real MNN call raises inside ``infer``), no_memory (a MemoryError in the
iteration, as an allocation under a memory cap would raise), chatter (64 KiB written to
stderr: the worker's log grows), huge_output (the first output replaced by a 4 GiB
zero-stride view, which takes no memory: a record no ring can hold). ``load_error`` makes a real MNN
call raise while a worker whose first iteration is at or past N loads the model.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import time
from dataclasses import dataclass
from typing import Any

from stress.contract.stages import Binding, Layer

ENV_VAR = "MNN_STRESS_TEST_FAULT"
WORKER_KINDS = ("segv", "abort", "hang", "raise", "exit", "corrupt", "invalid_read")
DRIVER_KINDS = ("perturb", "ulp", "nan", "rc", "mnn_raise", "leak", "slow", "no_memory")
DRIVER_KINDS += ("chatter", "huge_output")
HUGE_OUTPUT_BYTES = (1 << 32) + 16  # more than a record's 32-bit length can say
CHATTER_LINE = "chatter " + "x" * 1015 + "\n"  # 1 KiB
LEAK_BYTES = 256 << 10
SLOW_STEP_S = 50e-6
LOAD_KINDS = ("load_error",)
KINDS = WORKER_KINDS + DRIVER_KINDS + LOAD_KINDS
NEVER = 1 << 62
INJECTED_RC = 7


class InjectedFault(RuntimeError):
    """Raised by the ``raise`` fault: an exception the worker does not expect."""


@dataclass(frozen=True)
class Fault:
    kind: str
    at: int
    repeats: bool
    thread: int | None = None  # None: every thread of the worker
    when: tuple[str, str] | None = None  # (factor, value): only variants with that value

    def fires(self, iteration: int) -> bool:
        return iteration == self.at or (self.repeats and iteration > self.at)

    def applies(self, params: dict[str, Any]) -> bool:
        """Whether this fault is for a variant with these factor values."""
        return self.when is None or str(params.get(self.when[0])) == self.when[1]


def parse(spec: str | None) -> tuple[Fault, ...]:
    """The faults of a spec (none for an empty one); ValueError for a malformed one."""
    return tuple(_parse_one(part.strip()) for part in (spec or "").split(",") if part.strip())


def _parse_one(spec: str) -> Fault:
    spec_only, _, condition = spec.partition("?")
    kind, _, at = spec_only.partition("@")
    at, _, thread = at.partition("/")
    repeats = at.endswith("+")
    factor, equals, value = condition.partition("=")
    if (
        kind not in KINDS
        or not at.rstrip("+").isdigit()
        or not (thread or "0").isdigit()
        or (condition and not (factor and equals and value))
    ):
        raise ValueError(
            f"bad {ENV_VAR} {spec!r}: expected KIND@N, KIND@N+ or either with /THREAD, then "
            f"optionally ?FACTOR=VALUE; KIND in {', '.join(KINDS)}"
        )
    when = (factor, value) if condition else None
    return Fault(kind, int(at.rstrip("+")), repeats, int(thread) if thread else None, when)


class Injector:
    """Fires the faults of one worker thread (each thread has its own). ``first`` is the
    earliest iteration any fault can fire at, so the hot loop pays one integer comparison
    when nothing is due."""

    def __init__(self, faults: tuple[Fault, ...], ring: Any, thread: int = 0) -> None:
        self.faults = tuple(f for f in faults if f.thread is None or f.thread == thread)
        self.ring = ring
        self.first = min((f.at for f in faults if f.kind not in LOAD_KINDS), default=NEVER)
        self.armed: set[str] = set()
        self.leaked: list[bytearray] = []
        self.slowed = 0

    def at_load(self, start_iteration: int) -> None:
        if any(f.kind in LOAD_KINDS and start_iteration >= f.at for f in self.faults):
            raise_from_mnn()

    def wrap(self, binding: Binding) -> Binding:
        """The binding itself, or one that applies driver faults when they are armed."""
        if any(f.kind in DRIVER_KINDS for f in self.faults):
            return FaultyBinding(binding, self)
        return binding

    def before(self, iteration: int) -> None:
        for fault in self.faults:
            if fault.fires(iteration):
                if fault.kind in DRIVER_KINDS:
                    self.armed.add(fault.kind)
                elif fault.kind in WORKER_KINDS:
                    trigger(fault.kind, self.ring)


class FaultyBinding(Layer):
    """Around a real binding: alters one iteration's results when the injector armed a fault."""

    def __init__(self, inner: Binding, injector: Injector) -> None:
        super().__init__(inner)
        self.injector = injector

    def iteration(self, inputs: list[Any]) -> tuple[int, list[Any]]:
        armed, self.injector.armed = self.injector.armed, set()
        if "mnn_raise" in armed:
            raise_from_mnn()
        if "no_memory" in armed:
            raise MemoryError("injected: an allocation failed")
        if "chatter" in armed:  # as a chatty MNN build would, on every iteration
            sys.stderr.write(CHATTER_LINE * 64)
            sys.stderr.flush()
        if "leak" in armed:
            self.injector.leaked.append(bytearray(b"\x01") * LEAK_BYTES)
        if "slow" in armed:
            self.injector.slowed += 1
            time.sleep(self.injector.slowed * SLOW_STEP_S)
        rc, outputs = self.inner.iteration(inputs)
        if "rc" in armed:
            rc = INJECTED_RC
        if "huge_output" in armed and outputs:
            outputs = [_huge(outputs[0]), *outputs[1:]]
        alteration = next((kind for kind in ("nan", "perturb", "ulp") if kind in armed), None)
        if alteration and outputs:
            outputs = [_altered(outputs[0], alteration), *outputs[1:]]
        return rc, outputs


def _altered(output: Any, how: str) -> Any:
    """A copy of ``output`` (never MNN's own memory) with its first element changed: made NaN,
    +1, or moved one unit in the last place away from zero (+1 for integers)."""
    import numpy as np

    changed = output.copy()
    flat = changed.reshape(-1)
    if how == "nan":
        flat[0] = float("nan")
    elif how == "perturb" or changed.dtype.kind != "f":
        flat[0] = flat[0] + 1
    else:
        flat[0] = np.nextafter(flat[0], np.inf if flat[0] >= 0 else -np.inf)
    return changed


def _huge(output: Any) -> Any:
    """A view of ``output``'s first element repeated to HUGE_OUTPUT_BYTES (no memory)."""
    import numpy as np

    first = output.reshape(-1)[:1]
    return np.broadcast_to(first, (HUGE_OUTPUT_BYTES // first.itemsize + 1,))


def raise_from_mnn() -> None:
    """Make a real MNN call raise (float64 data for a float32 tensor), as drivers report it."""
    import MNN
    import numpy as np

    from stress.worker.drivers import MNNError

    try:
        MNN.Tensor((2,), MNN.Halide_Type_Float, np.zeros(2), MNN.Tensor_DimensionType_Caffe)
    except Exception as exc:
        raise MNNError.wrap(exc) from exc
    raise InjectedFault("MNN accepted float64 data for a float32 tensor: no MNN error to inject")


def trigger(kind: str, ring: Any) -> None:
    if kind == "segv":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "raise":
        raise InjectedFault("injected test fault")
    elif kind == "exit":
        os._exit(7)
    elif kind == "invalid_read":
        read_freed_memory()
    elif kind == "corrupt":
        offset = ring.begin(8, 1)
        struct.pack_into("<I", ring.mm, offset - 16, 24)  # a size that is not 16-aligned
        ring.commit()
        time.sleep(5)  # alive, as a scribbling worker is, until the coordinator reads the ring


def read_freed_memory() -> bytes:
    """malloc 64 bytes, free them, read 8 of them: a use after free that changes nothing."""
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(64)
    libc.free(block)
    return ctypes.string_at(block, 8)
