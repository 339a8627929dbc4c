"""How long the outputs MNN returns are used: copied at once, or kept and read again.

MNN's outputs are views of its own memory (``getNumpyData()``, ``Var.read()``). ``copy``
(the baseline) copies them the moment they are produced. ``retained`` keeps the views of
each thread's first iterations, runs once more on other inputs after the loop, and records
what the views then hold; ``after_release`` also drops the session, Interpreter or module
first. Those rows carry ``observation`` = ``retained`` / ``after_release`` next to the
iteration's ``fetch`` rows; ``summary`` counts the views whose bytes changed.
"""

from __future__ import annotations

from stress.contract.stages import Binding, ThreadContext
from stress.factors.factor import Factor

VALUES = ("copy", "retained", "after_release")


def _wrap(value: str, binding: Binding, context: ThreadContext) -> Binding:
    if value == "copy":
        return binding
    from stress.worker import output_lifetimes

    return output_lifetimes.wrap(value, binding, context)


OUTPUT_LIFETIME = Factor(
    name="output_lifetime",
    kind=str,
    default="copy",
    choices=VALUES,
    doc="How long output views are used: copy (at once), retained (kept, read again after "
    "one more run on other inputs), after_release (read again after their session, "
    "Interpreter or module is gone).",
    wrap=_wrap,
)

FACTORS = (OUTPUT_LIFETIME,)
