"""What a factor is: one matrix key with its type, values, default, the stage hooks it takes part
in, and the rules that refuse combinations with other factors. Stdlib only: workers import this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stress.contract.stages import Binding, Launch, ThreadContext

DEFAULT_API = "session"  # the ``api`` factor's default, which per-API defaults fall back to


@dataclass(frozen=True)
class Rule:
    """A combination of factor values that makes no sense: ``check`` returns why (naming the
    ``keys`` involved and their values), or None when the combination is fine."""

    keys: tuple[str, ...]
    check: Callable[[Mapping[str, Any]], str | None]


def allowed_per_api(key: str, allowed: Mapping[str, tuple[str, ...]]) -> Rule:
    """A rule: the value of ``key`` must be one that the variant's ``api`` has."""

    def check(params: Mapping[str, Any]) -> str | None:
        values = allowed[params["api"]]
        if params[key] in values:
            return None
        return (
            f"{key}={params[key]} does not exist for api={params['api']}: "
            f"that API has {', '.join(values)}"
        )

    return Rule((key, "api"), check)


@dataclass(frozen=True)
class Conflict:
    keys: tuple[str, ...]
    values: dict[str, Any]
    message: str


@dataclass(frozen=True)
class Factor:
    """One matrix key and the stages it takes part in (each hook optional)."""

    name: str
    kind: type
    default: Any
    doc: str
    choices: tuple[Any, ...] | None = None
    minimum: int | None = None
    maximum: int | None = None
    value_check: Callable[[Any], str | None] | None = None  # why a value is malformed, or None
    per_api: Mapping[str, Any] | None = None  # a default per ``api``, where they differ
    launch: Callable[[Any, Launch], None] | None = None
    configure_mnn: Callable[[Any, dict[str, Any]], None] | None = None
    wrap: Callable[[Any, Binding, ThreadContext], Binding] | None = None
    # In the worker, before its engine is built: returns what undoes it when the worker ends
    before_loop: Callable[[Any, Mapping[str, Any]], Callable[[], None] | None] | None = None
    # In the worker, right before its engine is built (after its own imports and inputs)
    before_build: Callable[[Any, Mapping[str, Any]], None] | None = None
    # In the worker, once every thread is set up, before the first iteration
    after_setup: Callable[[Any, Mapping[str, Any]], None] | None = None
    rules: tuple[Rule, ...] = ()
    # Why a value cannot be used on this machine (a tool, a permission or an environment
    # missing) and the fix, or None: checked at validation, before anything runs
    unavailable: Callable[[Any], tuple[str, str] | None] | None = None
    off: bool = False  # ``off`` (None in params, null in Parquet) is a value, and the default
    # How a scenario may write a value (e.g. a mapping) to its canonical form; ValueError: why not
    parse: Callable[[Any], Any] | None = None

    def default_for(self, params: Mapping[str, Any]) -> Any:
        """The default for a variant: the one of its ``api`` where the factor has one each."""
        if self.per_api is None:
            return self.default
        return self.per_api[params.get("api", DEFAULT_API)]

    def check(self, value: Any) -> str | None:
        """Return why ``value`` is not allowed, or None when it is."""
        if self.off and value is None:
            return None
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            return f"expected {self.kind.__name__}, got {type(value).__name__} {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {', '.join(map(str, self.choices))}"
        if self.minimum is not None and value < self.minimum:
            return f"{value} is below the minimum {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"{value} is above the maximum {self.maximum}"
        if self.value_check is not None:
            return self.value_check(value)
        return None
