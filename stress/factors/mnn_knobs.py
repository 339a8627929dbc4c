"""MNN runtime knobs passed to createSession / create_runtime_manager."""

from __future__ import annotations

from typing import Any

from stress.factors import Factor


def _set(key: str):
    def configure(value: Any, config: dict[str, Any]) -> None:
        config[key] = value

    return configure


NUM_THREAD = Factor(
    name="num_thread",
    kind=int,
    default=1,
    minimum=1,
    maximum=64,
    doc="MNN's own thread count inside one inference call (config 'numThread').",
    configure_mnn=_set("numThread"),
)

PRECISION = Factor(
    name="precision",
    kind=str,
    default="normal",
    choices=("normal", "high", "low"),
    doc="MNN precision mode (config 'precision'); 'low' may use fp16/bf16 where supported.",
    configure_mnn=_set("precision"),
)

FACTORS = (NUM_THREAD, PRECISION)
