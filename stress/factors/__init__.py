"""The factor registry: every matrix key a scenario may use, defined once.

A factor is a named setting with a type, allowed values and a default. The scenario schema,
the Parquet columns and the worker all read this registry, so adding a factor means one new
module and one entry in ``REGISTRY``. Stdlib only: workers import this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Factor:
    """One matrix key. ``configure_mnn`` (if any) writes the value into MNN's runtime config."""

    name: str
    kind: type
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    configure_mnn: Callable[[Any, dict[str, Any]], None] | None = None

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not allowed, or None when it is."""
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            return f"expected {self.kind.__name__}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.minimum is not None and value < self.minimum:
            return f"{value} is below the minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{value} is above the maximum {self.maximum}"
        return None


def _registry() -> dict[str, Factor]:
    from stress.factors import api, mnn_knobs

    factors = [*api.FACTORS, *mnn_knobs.FACTORS]
    return {factor.name: factor for factor in factors}


REGISTRY: dict[str, Factor] = _registry()


def defaults() -> dict[str, Any]:
    """Every factor at its default value."""
    return {name: factor.default for name, factor in REGISTRY.items()}


def mnn_config(params: dict[str, Any]) -> dict[str, Any]:
    """The MNN runtime config dict (``createSession`` / ``create_runtime_manager``) for params."""
    config: dict[str, Any] = {}
    for name, factor in REGISTRY.items():
        if factor.configure_mnn is not None:
            factor.configure_mnn(params.get(name, factor.default), config)
    return config
