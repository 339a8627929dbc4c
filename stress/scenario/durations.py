"""Durations as scenario files and the command line write them (``500ms``, ``30s``, ``2m``,
``8h``), with the limits beyond which a value is a typo or a hostile file, never a plan."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)\s*$", re.ASCII)
_NUMBER = re.compile(r"^\s*([-+]?[0-9]+(?:\.[0-9]+)?(?:e[-+]?[0-9]+)?)\s*$", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_UNITS = "or ms, m, h"
_DAY_S = 86400.0

MAX_DURATION_S = 7 * _DAY_S  # iteration time per variant
MIN_TIMEOUT_S = 1.0  # below this, scheduling noise alone would "hang" an iteration
MAX_TIMEOUT_S = _DAY_S


def parse_duration(value: Any, *, min_s: float = 0.0, max_s: float = MAX_DURATION_S) -> float:
    """Seconds from a string such as ``500ms``, ``90s``, ``2m``, ``8h``, within [min_s, max_s].
    A bare number is refused (``duration: 20`` might mean minutes), as are NaN and infinity
    (a NaN timeout would never fire)."""
    seconds = _seconds(value)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > max_s:
        raise ValueError(f"{value!r} is longer than the limit of {_spoken(max_s)}")
    if seconds < min_s:
        raise ValueError(f"{value!r} is shorter than the limit of {_spoken(min_s)}")
    return seconds


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 2m or 1h")
    number = _NUMBER.match(str(value)) if isinstance(value, int | float | str) else None
    if number and float(number.group(1)) <= 0:
        raise ValueError("a duration must be positive; write e.g. 500ms, 30s, 2m or 1h")
    if number:  # 20 could be seconds or minutes: the writer says which
        raise ValueError(f"{value!r} has no unit; write {number.group(1)}s for seconds ({_UNITS})")
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write e.g. 500ms, 30s, 2m or 1h")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def _spoken(seconds: float) -> str:
    """A limit in the units durations are written in: ``10ms``, ``24h``, ``168h (7 days)``."""
    unit = max((u for u in ("ms", "s", "m", "h") if seconds >= _UNIT_S[u]), key=_UNIT_S.get)
    text = f"{seconds / _UNIT_S[unit]:g}{unit}"
    return f"{text} ({seconds / _DAY_S:g} days)" if seconds > _DAY_S else text


def parse_timeout(value: Any) -> float:
    return parse_duration(value, min_s=MIN_TIMEOUT_S, max_s=MAX_TIMEOUT_S)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Timeout = Annotated[float, BeforeValidator(parse_timeout)]
