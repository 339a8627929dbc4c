"""Durations as scenario files and the command line write them (``500ms``, ``30s``, ``2m``,
``8h``), with the limits beyond which a value is a typo or a hostile file, never a plan."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_DAY_S = 86400.0

MAX_DURATION_S = 7 * _DAY_S  # iteration time per variant
MIN_TIMEOUT_S = 1.0  # below this, scheduling noise alone would "hang" an iteration
MAX_TIMEOUT_S = _DAY_S


def parse_duration(value: Any, *, min_s: float = 0.0, max_s: float = MAX_DURATION_S) -> float:
    """Seconds from a number or a string such as ``500ms``, ``90s``, ``2m``, ``8h``, within
    [min_s, max_s]; NaN and infinity are refused (a NaN timeout would never fire)."""
    seconds = _seconds(value)
    if math.isnan(seconds):
        raise ValueError(f"{value!r} is not a number of seconds")
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
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer too large for a float is longer than any limit
            return math.inf if value > 0 else -math.inf
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
