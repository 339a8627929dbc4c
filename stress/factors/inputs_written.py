"""When the inputs are copied into MNN: before every run, or once at set-up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stress.contract.stages import Binding, Layer, ThreadContext
from stress.factors.factor import Factor, Rule


class WrittenOnce(Layer):
    """Hands the inputs to MNN on the first iteration only, then runs on what MNN holds (the
    session's input tensors; the Module API's input Vars): what a user does when timing "the
    same inference, repeated"."""

    def __init__(self, inner: Binding) -> None:
        super().__init__(inner)
        self.written = False

    def feed(self, inputs: list[Any]) -> None:
        if not self.written:
            self.inner.feed(inputs)
            self.written = True


def _once_needs_kept_objects(params: Mapping[str, Any]) -> str | None:
    renews_inputs = params["lifecycle"] in ("session_per_iteration", "interpreter_per_iteration")
    if params["inputs_written"] == "once" and renews_inputs:
        return (
            f"inputs_written=once with lifecycle={params['lifecycle']}: a session built anew "
            "every iteration would run on inputs nobody wrote"
        )
    return None


def _wrap(value: str, binding: Binding, context: ThreadContext) -> Binding:
    return WrittenOnce(binding) if value == "once" else binding


INPUTS_WRITTEN = Factor(
    name="inputs_written",
    kind=str,
    default="every_run",
    choices=("every_run", "once"),
    doc="Copy the inputs into MNN before every run, or once at set-up and then run repeatedly.",
    wrap=_wrap,
    rules=(Rule(("inputs_written", "lifecycle"), _once_needs_kept_objects),),
)

FACTORS = (INPUTS_WRITTEN,)
