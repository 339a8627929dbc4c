"""The stages of a worker's life that a factor may take part in, and the hook of each.

======  ==========================  ==========================================================
stage   where                       hook
======  ==========================  ==========================================================
launch  coordinator, before exec    ``Factor.launch(value, Launch)``: the worker's environment,
                                    interpreter, command prefix and kernel memory limit
before  worker, before the build    ``Factor.before_loop(value, params)``: the world around it
                                    (ballast, sibling processes); returns what undoes it
cap     worker, before the build    ``Factor.before_build(value, params)``: limits that must
                                    include the build (``RLIMIT_AS`` with
                                    ``rlimit_as_from: setup``); the worker's own imports,
                                    inputs and threads come before it
build   worker, main thread         ``Factor.configure_mnn(value, config)``; ``api``, ``sharing``
                                    and ``lifecycle`` decide which MNN objects are built once
setup   worker, each thread         ``Binding.setup()``: the thread's own MNN objects
begin   each iteration              ``Binding.begin()``: a new session (``lifecycle``)
feed    each iteration              ``Binding.feed(inputs)``: hand the inputs to MNN
run     each iteration              ``Binding.run() -> rc``: inference
fetch   each iteration              ``Binding.fetch() -> outputs``: views valid until the next
                                    iteration; the caller copies them at once
end     each iteration              ``Binding.end()``: after the outputs were recorded
ready   worker, all threads set up  ``Factor.after_setup(value, params)``: limits that must
                                    spare the set-up (``RLIMIT_AS``)
look    worker, after the loops     ``Binding.kept_views()``: outputs kept to be read again
                                    (``output_lifetime``); ``Binding.release()`` first drops
                                    every MNN object when they are read after release
======  ==========================  ==========================================================

A factor takes part in stages setup to end through ``Factor.wrap(value, binding, context)``,
which returns a ``Layer`` around one thread's binding (or the binding itself). Layers wrap in
registry order: the first factor's layer is the closest to MNN. A layer changes single stages
(the default ``iteration`` calls them in turn) or the whole ``iteration`` (delegating to its
inner binding's). Stdlib only: workers import it.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Launch:
    """How the coordinator starts a worker process besides its job: extra environment, the
    interpreter (None: the coordinator's), a command the worker runs under (valgrind ...), and
    a memory limit the kernel enforces on it (a cgroup; None: none)."""

    env: dict[str, str] = field(default_factory=dict)
    python: str | None = None
    prefix: list[str] = field(default_factory=list)
    memory_limit_bytes: int | None = None


@dataclass
class ThreadContext:
    """What one worker thread's layers may use: its index, a seeded random source, and objects
    every thread of the worker shares (``shared``, e.g. the caller's lock)."""

    thread: int
    seed: int
    shared: dict[str, Any]
    first_iteration: int = 0  # the iteration number of the thread's first ``begin``
    random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed * 1_000_003 + self.thread)

    def shared_lock(self, name: str) -> threading.Lock:
        return self.shared.setdefault(name, threading.Lock())


class Binding:
    """One thread's hold on MNN objects (a driver implements it). Any MNN exception is raised
    as ``MNNError``; anything else is a bug of ours."""

    def setup(self) -> None:
        """Build the thread's own objects (called once, before the first iteration)."""

    def renew(self, level: str) -> None:
        """Build the objects from ``level`` down anew (``lifecycle``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot renew {level!r}")

    def begin(self) -> None:
        """First stage of an iteration."""

    def feed(self, inputs: list[Any]) -> None:
        raise NotImplementedError

    def run(self) -> int:
        raise NotImplementedError

    def fetch(self) -> list[Any]:
        raise NotImplementedError

    def end(self) -> None:
        """Last stage of an iteration, after its outputs were recorded."""

    def iteration(self, inputs: list[Any]) -> tuple[int, list[Any]]:
        """begin, feed, run and fetch; ``end`` comes after the caller recorded the outputs."""
        self.begin()
        self.feed(inputs)
        rc = self.run()
        return rc, self.fetch()

    def kept_views(self) -> list[tuple[int, list[Any]]]:
        """Outputs kept to be read again after the loop, as (iteration, views)."""
        return []

    def release(self) -> None:
        """Drop every MNN object this thread holds (after its loop, before a last look)."""

    def facts(self) -> dict[str, Any]:
        """What the binding holds, for tests that prove a factor was applied."""
        return {}


class Layer(Binding):
    """A binding around another: every stage goes to ``inner`` unless a subclass changes it."""

    def __init__(self, inner: Binding) -> None:
        self.inner = inner

    def setup(self) -> None:
        self.inner.setup()

    def renew(self, level: str) -> None:
        self.inner.renew(level)

    def begin(self) -> None:
        self.inner.begin()

    def feed(self, inputs: list[Any]) -> None:
        self.inner.feed(inputs)

    def run(self) -> int:
        return self.inner.run()

    def fetch(self) -> list[Any]:
        return self.inner.fetch()

    def end(self) -> None:
        self.inner.end()

    def kept_views(self) -> list[tuple[int, list[Any]]]:
        return self.inner.kept_views()

    def release(self) -> None:
        self.inner.release()

    def facts(self) -> dict[str, Any]:
        return self.inner.facts()
