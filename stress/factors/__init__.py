"""The factor registry: every matrix key a scenario may use, defined once.

What a factor is (its type, values, default, stage hooks and rules) is defined in
``stress.factors.factor``; each family of factors is a module beside it. The scenario schema,
validation, the Parquet columns and the worker all read this registry, so adding a factor means
one new module and one entry in ``_registry``. Stdlib only: workers import this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stress.contract.stages import Binding, Launch, ThreadContext
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
    placement,
    pressure,
    threads,
    version,
)
from stress.factors.factor import Conflict, Factor


def _registry() -> dict[str, Factor]:
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
        *placement.FACTORS,
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
