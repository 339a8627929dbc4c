"""The ``output_lifetime`` layer and the last look: output views kept and read again.

With ``retained`` or ``after_release`` the drivers return MNN's own views from ``fetch``
(``getNumpyData()`` of the session's output tensors; ``read()`` of the module's output
Vars), recorded at once as usual. ``Retained`` keeps the views of each thread's first
RETAINED_PER_THREAD iterations. After the loops the worker runs every thread once more on other
inputs (not recorded), so memory that is reused shows it; with ``after_release`` it then drops
every MNN object and allocates and poisons the same sizes again; and it records what each kept
view holds, as rows of the view's iteration with ``observation`` ``retained`` or
``after_release``. Reading a view whose memory is gone may kill the worker: that is a finding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stress.contract.stages import Binding, Layer, ThreadContext
from stress.worker.input_lifetimes import free, malloc_poisoned

RETAINED_PER_THREAD = 8


class Retained(Layer):
    """Keeps the output views of the thread's first RETAINED_PER_THREAD iterations."""

    def __init__(self, inner: Binding, context: ThreadContext) -> None:
        super().__init__(inner)
        self.current = context.first_iteration - 1  # the iteration under way
        self.kept: list[tuple[int, list[Any]]] = []
        self.keeping = True

    def begin(self) -> None:
        self.current += 1
        self.inner.begin()

    def fetch(self) -> list[Any]:
        outputs = self.inner.fetch()
        if self.keeping and len(self.kept) < RETAINED_PER_THREAD:
            self.kept.append((self.current, list(outputs)))
        return outputs

    def kept_views(self) -> list[tuple[int, list[Any]]]:
        self.keeping = False  # the probe run after the loop is not kept
        return self.kept

    def facts(self) -> dict[str, Any]:
        owning = sum(
            view.base is not None or view.flags.owndata for _, v in self.kept for view in v
        )
        return {**self.inner.facts(), "views_kept": len(self.kept), "kept_owning": owning}


def other_inputs(inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Inputs that differ from ``inputs`` in every element, for the run after the loop."""
    return [(a + 1).astype(a.dtype) for a in inputs]


def poison_like(views: list[np.ndarray]) -> list[int]:
    """``malloc`` and poison blocks of the views' sizes, so that freed memory is reused by
    something visibly else; returns the addresses (the caller frees them)."""
    return [malloc_poisoned(view.nbytes) for view in views]


def free_all(addresses: list[int]) -> None:
    for address in addresses:
        free(address)


def wrap(value: str, binding: Binding, context: ThreadContext) -> Binding:
    """The layer for an ``output_lifetime`` value other than ``copy``."""
    return Retained(binding, context)
