"""The factor registry: every matrix key a scenario may use, defined once.

A factor is a named setting with a type, allowed values and a default, and hooks into the
stages of a worker's life (``stress.contract.stages``): the worker's launch environment,
MNN's runtime config, and a layer around each thread's calls. ``rules`` refuse combinations
with other factors that make no sense. The scenario schema, validation, the Parquet columns and the
worker all read this registry, so adding a factor means one new module and one entry in
``_registry``. Stdlib only: workers import this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stress.contract.stages import Binding, Launch, ThreadContext


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
        return self.per_api[params.get("api", REGISTRY["api"].default)]

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


def _registry() -> dict[str, Factor]:
    from stress.factors import (
        api,
        convert,
        input_lifetime,
        input_path,
        inputs_written,
        lifecycle,
        limits,
        memcheck,
        misuse,
        mnn_knobs,
        output_lifetime,
        perturb,
        pressure,
        threads,
        version,
    )

    factors = [
        *api.FACTORS,
        *version.FACTORS,  # first in the worker: a wrong MNN stops it before anything
        *mnn_knobs.FACTORS,
        *threads.FACTORS,
        *lifecycle.FACTORS,
        *input_path.FACTORS,
        *misuse.FACTORS,
        *output_lifetime.FACTORS,
        *input_lifetime.FACTORS,
        *inputs_written.FACTORS,
        *perturb.FACTORS,
        *threads.LOCK_FACTORS,
        *pressure.FACTORS,
        *limits.FACTORS,
        *memcheck.FACTORS,
        *convert.FACTORS,
    ]
    return {factor.name: factor for factor in factors}


REGISTRY: dict[str, Factor] = _registry()


def defaults(api: str = "session") -> dict[str, Any]:
    """Every factor at its default value (for ``api``)."""
    return complete({"api": api})


def complete(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every factor it lacks at its default (its ``api``'s, where it has one
    per API; ``api`` comes first in the registry)."""
    full: dict[str, Any] = {}
    for name, factor in REGISTRY.items():
        full[name] = params[name] if name in params else factor.default_for(full)
    return full


def changed(params: Mapping[str, Any]) -> dict[str, Any]:
    """The factors of ``params`` that are not at their default for its ``api``."""
    full = complete(params)
    return {k: v for k, v in full.items() if REGISTRY[k].default_for(full) != v}


def mnn_config(params: Mapping[str, Any]) -> dict[str, Any]:
    """The MNN runtime config dict (``createSession`` / ``create_runtime_manager``) for params."""
    config: dict[str, Any] = {}
    for name, value in complete(params).items():
        hook = REGISTRY[name].configure_mnn
        if hook is not None:
            hook(value, config)
    return config


def launch(params: Mapping[str, Any]) -> Launch:
    """What the factors add to a worker's launch (its environment)."""
    result = Launch()
    for name, value in complete(params).items():
        hook = REGISTRY[name].launch
        if hook is not None:
            hook(value, result)
    return result


def before_loop(params: Mapping[str, Any]) -> list[Callable[[], None]]:
    """Apply every factor's worker-side set-up (ballast, sibling processes); the returned
    calls undo them, last first."""
    full = complete(params)
    undo = []
    for name, value in full.items():
        hook = REGISTRY[name].before_loop
        found = hook(value, full) if hook is not None else None
        if found is not None:
            undo.append(found)
    return undo[::-1]


def before_build(params: Mapping[str, Any]) -> None:
    """Apply what must come right before the engine is built (``rlimit_as_from: setup``)."""
    _each(params, "before_build")


def after_setup(params: Mapping[str, Any]) -> None:
    """Apply what must wait until the worker is set up (its address-space cap)."""
    _each(params, "after_setup")


def _each(params: Mapping[str, Any], stage: str) -> None:
    full = complete(params)
    for name, value in full.items():
        hook = getattr(REGISTRY[name], stage)
        if hook is not None:
            hook(value, full)


def shown(value: Any) -> str:
    """A factor value as a scenario writes it (``off`` for None)."""
    return "off" if value is None else str(value)


def wrap(params: Mapping[str, Any], binding: Binding, context: ThreadContext) -> Binding:
    """One thread's binding inside the layers of every factor (registry order, inner first)."""
    for name, value in complete(params).items():
        hook = REGISTRY[name].wrap
        if hook is not None:
            binding = hook(value, binding, context)
    return binding


def conflicts(params: Mapping[str, Any]) -> list[Conflict]:
    """Why this combination of factor values makes no sense (empty when it does)."""
    full = complete(params)
    found = []
    for factor in REGISTRY.values():
        for rule in factor.rules:
            message = rule.check(full)
            if message:
                found.append(Conflict(rule.keys, {k: full[k] for k in rule.keys}, message))
    return found
