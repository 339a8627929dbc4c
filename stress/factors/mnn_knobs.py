"""MNN runtime knobs passed to createSession / create_runtime_manager.

pymnn reads ``memory`` and ``power`` only as integers (a string is silently ignored), and
``backend`` as MNN's upper-case name; a backend the wheel lacks silently falls back to the
CPU, so validation refuses it (``stress.models.backends``).
"""

from __future__ import annotations

from typing import Any

from stress.factors.factor import Factor

MODES = ("normal", "high", "low")  # MNN's BackendConfig enum order: Normal=0, High=1, Low=2
BACKENDS = ("cpu", "opencl", "vulkan", "cuda", "opengl", "metal", "trt", "hiai", "nn")


def _set(key: str):
    def configure(value: Any, config: dict[str, Any]) -> None:
        config[key] = value

    return configure


def _set_mode(key: str):
    def configure(value: str, config: dict[str, Any]) -> None:
        if value != "normal":  # the skeleton's config had no key: keep it so at the default
            config[key] = MODES.index(value)

    return configure


def _set_backend(value: str, config: dict[str, Any]) -> None:
    if value != "cpu":
        config["backend"] = value.upper()


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
    choices=MODES,
    doc="MNN precision mode (config 'precision'); 'low' may use fp16/bf16 where supported.",
    configure_mnn=_set("precision"),
)

MEMORY_MODE = Factor(
    name="memory_mode",
    kind=str,
    default="normal",
    choices=MODES,
    doc="MNN memory mode (config 'memory'): 'low' trades speed for less memory.",
    configure_mnn=_set_mode("memory"),
)

POWER_MODE = Factor(
    name="power_mode",
    kind=str,
    default="normal",
    choices=MODES,
    doc="MNN power mode (config 'power'): how hard MNN's thread pool spins.",
    configure_mnn=_set_mode("power"),
)

BACKEND = Factor(
    name="backend",
    kind=str,
    default="cpu",
    choices=BACKENDS,
    doc="MNN forward type (config 'backend'); one the installed wheel lacks is refused.",
    configure_mnn=_set_backend,
)

FACTORS = (NUM_THREAD, PRECISION, MEMORY_MODE, POWER_MODE, BACKEND)
