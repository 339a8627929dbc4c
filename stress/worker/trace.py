"""Test-only instrumentation that proves, from inside a worker, that factors were applied.

Enabled only by ``MNN_STRESS_TEST_TRACE=DIR`` in the coordinator's environment (no scenario
key can set it). A layer next to MNN counts, per stage, the most threads inside it at once,
the calls made while a caller's lock was free, and each thread's calls; a worker that ends
normally writes ``DIR/trace-PID.json`` with that and each thread's binding facts.
"""

from __future__ import annotations

import collections
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from stress.contract.stages import Binding, Layer

ENV_VAR = "MNN_STRESS_TEST_TRACE"


class Tracer:
    """Shared by the threads of one worker."""

    def __init__(self, shared: dict[str, Any]) -> None:
        self.shared = shared
        self.lock = threading.Lock()
        self.inside: collections.Counter[str] = collections.Counter()
        self.peak: collections.Counter[str] = collections.Counter()
        self.unlocked: collections.Counter[str] = collections.Counter()
        self.calls: dict[int, collections.Counter[str]] = {}
        self.bindings: dict[int, Binding] = {}
        self.fed: collections.Counter[str] = collections.Counter()  # arrays handed to MNN

    def layer(self, binding: Binding, thread: int) -> Binding:
        """The layer next to MNN; ``outermost`` names the thread's full binding later."""
        self.calls[thread] = collections.Counter()
        self.bindings[thread] = binding
        return Traced(binding, self, thread)

    def outermost(self, binding: Binding, thread: int) -> None:
        """The thread's binding with every factor's layer: its facts include theirs."""
        self.bindings[thread] = binding

    def enter(self, stage: str, thread: int) -> None:
        with self.lock:
            for key in (stage, "any"):
                self.inside[key] += 1
                self.peak[key] = max(self.peak[key], self.inside[key])
            self.calls[thread][stage] += 1
            caller_lock = self.shared.get("caller_lock")
            if caller_lock is not None and not caller_lock.locked():
                self.unlocked[stage] += 1

    def leave(self, stage: str) -> None:
        with self.lock:
            self.inside[stage] -= 1
            self.inside["any"] -= 1

    def saw_inputs(self, inputs: list[Any]) -> None:
        """How the arrays handed to the driver were made (``input_lifetime``'s proof)."""
        with self.lock:
            for array in inputs:
                self.fed["arrays"] += 1
                self.fed["non_contiguous"] += not array.flags.c_contiguous
                self.fed["not_owning"] += not array.flags.owndata
                self.fed["read_only"] += not array.flags.writeable

    def dump(self, directory: str, variant_id: str, last_look: dict[str, int]) -> None:
        report = {
            "pid": os.getpid(),
            "variant_id": variant_id,
            "last_look": last_look,
            "peak": dict(self.peak),
            "unlocked": dict(self.unlocked),
            "calls": {str(t): dict(c) for t, c in self.calls.items()},
            "fed": dict(self.fed),
            "facts": {str(t): b.facts() for t, b in self.bindings.items()},
            "switch_interval": sys.getswitchinterval(),
        }
        Path(directory, f"trace-{os.getpid()}.json").write_text(json.dumps(report))


class Traced(Layer):
    def __init__(self, inner: Binding, tracer: Tracer, thread: int) -> None:
        super().__init__(inner)
        self.tracer = tracer
        self.thread = thread

    def _call(self, stage: str, call: Any, *args: Any) -> Any:
        self.tracer.enter(stage, self.thread)
        try:
            return call(*args)
        finally:
            self.tracer.leave(stage)

    def setup(self) -> None:
        self._call("setup", self.inner.setup)

    def renew(self, level: str) -> None:
        self._call("renew", self.inner.renew, level)

    def begin(self) -> None:
        self._call("begin", self.inner.begin)

    def feed(self, inputs: list[Any]) -> None:
        self.tracer.saw_inputs(inputs)
        self._call("feed", self.inner.feed, inputs)

    def run(self) -> int:
        return self._call("run", self.inner.run)

    def fetch(self) -> list[Any]:
        return self._call("fetch", self.inner.fetch)

    def end(self) -> None:
        self._call("end", self.inner.end)
