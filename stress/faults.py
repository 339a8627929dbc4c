"""Test-only fault injection inside a worker, to prove that deaths are survived and that every
wrong result is detected and counted.

Enabled only by the environment variable ``MNN_STRESS_TEST_FAULT`` in the coordinator's
environment (no scenario key can set it). Syntax: ``KIND@N`` fires at iteration N, ``KIND@N+``
at every iteration from N on; several faults are separated by commas (``nan@3,rc@5``).

Kinds that end or upset the worker, before the iteration: segv (a real invalid memory read),
abort, hang, raise (an exception in harness code), exit, corrupt (publish a record no worker
could write). Kinds that change what the driver returns: perturb (one output element changed),
nan (one output element made NaN), rc (a non-zero return code), mnn_raise (a real MNN call
raises inside ``infer``). ``load_error`` makes a real MNN call raise while a worker whose first
iteration is at or past N loads the model.
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

from stress.stages import Binding, Layer

ENV_VAR = "MNN_STRESS_TEST_FAULT"
WORKER_KINDS = ("segv", "abort", "hang", "raise", "exit", "corrupt")
DRIVER_KINDS = ("perturb", "nan", "rc", "mnn_raise")
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

    def fires(self, iteration: int) -> bool:
        return iteration == self.at or (self.repeats and iteration > self.at)


def parse(spec: str | None) -> tuple[Fault, ...]:
    """The faults of a spec (none for an empty one); ValueError for a malformed one."""
    return tuple(_parse_one(part.strip()) for part in (spec or "").split(",") if part.strip())


def _parse_one(spec: str) -> Fault:
    kind, _, at = spec.partition("@")
    repeats = at.endswith("+")
    if kind not in KINDS or not at.rstrip("+").isdigit():
        raise ValueError(
            f"bad {ENV_VAR} {spec!r}: expected KIND@N or KIND@N+ with KIND in {', '.join(KINDS)}"
        )
    return Fault(kind, int(at.rstrip("+")), repeats)


class Injector:
    """Fires the faults of one worker thread (each thread has its own). ``first`` is the
    earliest iteration any fault can fire at, so the hot loop pays one integer comparison
    when nothing is due."""

    def __init__(self, faults: tuple[Fault, ...], ring: Any) -> None:
        self.faults = faults
        self.ring = ring
        self.first = min((f.at for f in faults if f.kind not in LOAD_KINDS), default=NEVER)
        self.armed: set[str] = set()

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

    def run(self) -> int:
        armed = self.injector.armed
        if "mnn_raise" in armed:
            armed.clear()
            raise_from_mnn()
        rc = self.inner.run()
        if "rc" in armed:
            armed.discard("rc")
            rc = INJECTED_RC
        return rc

    def fetch(self) -> list[Any]:
        outputs = self.inner.fetch()
        armed, self.injector.armed = self.injector.armed, set()
        if armed & {"perturb", "nan"} and outputs:
            outputs = [_altered(outputs[0], "nan" in armed), *outputs[1:]]
        return outputs


def _altered(output: Any, nan: bool) -> Any:
    """A copy of ``output`` (never MNN's own memory) with its first element changed."""
    changed = output.copy()
    flat = changed.reshape(-1)
    if nan:
        flat[0] = float("nan")
    else:
        flat[0] = flat[0] + 1
    return changed


def raise_from_mnn() -> None:
    """Make a real MNN call raise (float64 data for a float32 tensor), as drivers report it."""
    import MNN
    import numpy as np

    from stress.drivers import MNNError

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
    elif kind == "corrupt":
        offset = ring.begin(8, 1)
        struct.pack_into("<I", ring.mm, offset - 16, 24)  # a size that is not 16-aligned
        ring.commit()
