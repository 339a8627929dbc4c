"""Deliberate wrong use of the Python API, to show how an MNN version reacts to it.

Each value makes one mistake users make (the drivers do it, in ``feed``, ``fetch`` or at
set-up); the outcome is the finding: it raises (rows with ``status = error``), returns an
error code, kills the worker (events), or silently computes (compare the outputs with the
``none`` variant's). A misuse that fails while the worker sets up is the variant's outcome:
the variant ends ``refused`` instead of being retried into quarantine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stress.factors.factor import Factor, Rule, allowed_per_api
from stress.factors.input_path import INPUT_PATH

UNKNOWN_NAME = "mnn_stress_no_such_tensor"  # the input or output name no model has
_BOTH = ("none", "missing_input", "extra_input", "wrong_rank", "wrong_dtype", "unknown_output")
MISUSES = {
    "session": (*_BOTH, "from_numpy", "bare_ndarray", "untyped_tensor"),
    "module": (*_BOTH, "bare_ndarray"),
}


def _misuse_takes_the_default_path(params: Mapping[str, Any]) -> str | None:
    default = INPUT_PATH.default_for(params)
    if params["misuse"] == "none" or params["input_path"] == default:
        return None
    return (
        f"misuse={params['misuse']} with input_path={params['input_path']}: a misuse replaces "
        f"the input path; it is made on the API's default path ({default})"
    )


def output_names(params: Mapping[str, Any], names: list[str]) -> list[str]:
    """The outputs a variant's worker asks for: the model's, plus a name it lacks when that
    is the misuse."""
    return [*names, UNKNOWN_NAME] if params.get("misuse") == "unknown_output" else list(names)


MISUSE = Factor(
    name="misuse",
    kind=str,
    default="none",
    choices=MISUSES["session"],
    doc="Deliberate wrong use: missing_input (one input never given), extra_input (one input "
    "too many), wrong_rank (an input flattened to rank 1), wrong_dtype (float64 data), "
    "unknown_output (an output name the model lacks), from_numpy (Tensor.fromNumpy on a "
    "session input), bare_ndarray (an ndarray where MNN expects a Tensor or Var), "
    "untyped_tensor (MNN.Tensor(array) with no dtype).",
    rules=(
        allowed_per_api("misuse", MISUSES),
        Rule(("misuse", "input_path"), _misuse_takes_the_default_path),
    ),
)

FACTORS = (MISUSE,)
