"""Interleaving perturbation in the spirit of rr's chaos mode, to raise the odds of races.

``chaos`` makes the interpreter switch threads every microsecond (``sys.setswitchinterval``)
and, before each stage of an iteration, yields or sleeps for a seeded random moment.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from stress.contract.stages import Binding, Layer, ThreadContext
from stress.factors.factor import Factor

SWITCH_INTERVAL_S = 1e-6
MAX_SLEEP_S = 200e-6


class Chaos(Layer):
    """Before every stage: nothing, a yield (``sleep(0)``) or a sleep of up to MAX_SLEEP_S,
    chosen by the thread's seeded random source."""

    def __init__(self, inner: Binding, context: ThreadContext) -> None:
        super().__init__(inner)
        self.random = context.random
        self.pauses = 0
        sys.setswitchinterval(SWITCH_INTERVAL_S)

    def _jitter(self) -> None:
        draw = self.random.random()
        if draw < 0.25:
            return
        self.pauses += 1
        time.sleep(0 if draw < 0.75 else draw * MAX_SLEEP_S)

    def facts(self) -> dict[str, Any]:
        return {**self.inner.facts(), "chaos_pauses": self.pauses}

    def begin(self) -> None:
        self._jitter()
        self.inner.begin()

    def feed(self, inputs: list[Any]) -> None:
        self._jitter()
        self.inner.feed(inputs)

    def run(self) -> int:
        self._jitter()
        return self.inner.run()

    def fetch(self) -> list[Any]:
        self._jitter()
        return self.inner.fetch()


def _wrap(value: str, binding: Binding, context: ThreadContext) -> Binding:
    return Chaos(binding, context) if value == "chaos" else binding


PERTURB = Factor(
    name="perturb",
    kind=str,
    default="none",
    choices=("none", "chaos"),
    doc="Interleaving perturbation: 'chaos' switches Python threads every microsecond and "
    "yields or sleeps a seeded random moment between API calls.",
    wrap=_wrap,
)

FACTORS = (PERTURB,)
