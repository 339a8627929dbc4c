"""What happens to the arrays a thread hands to MNN: kept, borrowed, changed or freed.

``copy`` (the baseline) hands MNN the thread's own arrays, made once, owned, kept alive and
never touched. Each other value changes one thing (``stress.worker.input_lifetimes``):

- ``borrowed``: read-only views of memory the worker's threads share, not owned by the array;
- ``mutated``: every element changed after MNN received it and before the run;
- ``freed``: memory from libc's ``malloc``, poisoned (0xFF bytes) and ``free``d before the run,
  then allocated again and poisoned (glibc usually hands back the same block);
- ``unmapped``: pages of their own (``mmap``), unmapped before the run: a later read faults;
- ``gc_churn``: fresh arrays each iteration, dropped and garbage-collected before the run;
- ``strided`` / ``fortran``: non-contiguous views, column-major copies.

With the Session API MNN copies the inputs into the session during ``feed``; with the
Module API the run reads the input Vars: each value shows whether anything still reads the
caller's memory after the hand-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stress.contract.stages import Binding, ThreadContext
from stress.factors.factor import Factor, Rule

VALUES = ("copy", "borrowed", "mutated", "freed", "unmapped", "gc_churn", "strided", "fortran")
# Input paths on which MNN receives the caller's array itself; the others hand it a copy the
# harness made (transposed, packed) or copy it with numpy (host_write).
HANDS_OVER_THE_ARRAY = ("tensor_copy", "const", "numpy_array", "placeholder")


def _lifetime_needs_the_array_handed_over(params: Mapping[str, Any]) -> str | None:
    if params["input_lifetime"] == "copy" or params["input_path"] in HANDS_OVER_THE_ARRAY:
        return None
    return (
        f"input_lifetime={params['input_lifetime']} with input_path={params['input_path']}: "
        "that path never hands MNN the array itself (the harness transposes or packs it, or "
        f"numpy copies it), so its lifetime cannot matter; use one of "
        f"{', '.join(HANDS_OVER_THE_ARRAY)}"
    )


def _wrap(value: str, binding: Binding, context: ThreadContext) -> Binding:
    if value == "copy":
        return binding
    from stress.worker import input_lifetimes

    return input_lifetimes.wrap(value, binding, context)


INPUT_LIFETIME = Factor(
    name="input_lifetime",
    kind=str,
    default="copy",
    choices=VALUES,
    doc="What happens to the input arrays handed to MNN: copy (the thread's own, kept alive), "
    "borrowed (read-only shared views), mutated (changed before the run), freed (malloc'd, "
    "poisoned and freed before the run), unmapped (pages unmapped before the run), gc_churn "
    "(fresh arrays dropped and collected before the run), strided, fortran.",
    wrap=_wrap,
    rules=(Rule(("input_lifetime", "input_path"), _lifetime_needs_the_array_handed_over),),
)

FACTORS = (INPUT_LIFETIME,)
