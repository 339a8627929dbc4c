"""The worker's iteration threads, started before its engine is built.

A thread's stack is the harness's memory, not MNN's: started first, the stacks are mapped
before an address-space cap lowered at set-up (``rlimit_as_from: setup``), so the headroom
the scenario gives is MNN's to use. Each thread waits for its loop, sets it up, and all
start iterating together. A single loop runs on the worker's main thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

JOIN_GRACE_S = 5.0


class Loop(Protocol):
    binding: Any
    thread: int

    def run(self) -> None: ...


class Crew:
    """``count`` threads waiting for their loops (none when ``count`` is 1). ``start`` is
    called once every loop is set up; ``stop`` when a thread fails, to stop the others."""

    def __init__(self, count: int, start: Callable[[], None], stop: Callable[[], None]) -> None:
        self.start, self.stop = start, stop
        self.loops: list[Loop] = []
        self.given = threading.Event()
        self.ready = threading.Barrier(count + 1)
        self.go = threading.Event()
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._body, args=(index,), name=f"mnn-stress-{index}")
            for index in range(count if count > 1 else 0)
        ]
        for thread in self.threads:
            thread.daemon = True  # a thread stuck in MNN must not keep a failing worker alive
            thread.start()

    def run(self, loops: list[Loop]) -> None:
        """Set every loop up, then run them together. The first exception in any thread
        stops the others and is raised here."""
        self.loops = loops
        self.given.set()
        if not self.threads:
            loops[0].binding.setup()
            self.start()
            loops[0].run()
            return
        try:
            self.ready.wait()
            self.start()
        except threading.BrokenBarrierError:
            pass
        self.go.set()
        _join(self.threads, self.errors)
        if self.errors:
            raise self.errors[0]

    def dismiss(self) -> None:
        """No loops will come (the engine could not be built): the threads leave."""
        self.given.set()

    def _body(self, index: int) -> None:
        self.given.wait()
        if not self.loops:
            return
        loop = self.loops[index]
        try:
            loop.binding.setup()
            self.ready.wait()
            self.go.wait()
            loop.run()
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:  # re-raised by the main thread
            self.errors.append(exc)
            self.stop()
            self.ready.abort()


def _join(threads: list[threading.Thread], errors: list[BaseException]) -> None:
    """Wait for every thread, in short waits so that signals reach the main thread; after a
    failure, give the others JOIN_GRACE_S to leave MNN before reporting it."""
    grace_until = None
    for thread in threads:
        while thread.is_alive():
            thread.join(0.1)
            if errors and grace_until is None:
                grace_until = time.monotonic() + JOIN_GRACE_S
            if grace_until is not None and time.monotonic() > grace_until:
                return
