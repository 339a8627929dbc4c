"""Tick labels for the report's plots: every label of one axis in one form with its unit (never
'01:39' beside '05'), and log axes with enough labelled ticks to read a value off."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import matplotlib.dates as mdates
from matplotlib.ticker import Formatter, NullFormatter

LEAST_LOG_TICKS = 3
MIN_CLOCK_SPAN = timedelta(seconds=10)  # narrower, ticks would fall within one second
# (from how many seconds, seconds per unit, unit): a running time's axis is in one unit
DURATION_UNITS = ((7200.0, 3600.0, "h"), (120.0, 60.0, "min"), (0.0, 1.0, "s"))
# (up to how many decades shown, the digits ticked in each decade): seven ticks at most
_LOG_DIGITS = ((0.5, range(1, 10)), (1.5, (1, 2, 5)), (3.0, (1, 3)), (math.inf, (1,)))
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class Decimals(Formatter):
    """Numbers in fixed point then the unit ('2.5 ms'): every tick of the axis with as many
    decimals as the ticks need to be written exactly, or with ``each`` (log axes) each its own."""

    def __init__(self, unit: str, scale: float = 1.0, each: bool = False) -> None:
        self.unit, self.scale, self.each = unit, scale, each

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.format_ticks([x])[0]

    def format_ticks(self, values: Sequence[float]) -> list[str]:
        scaled = [0.0 if v == 0 else v * self.scale for v in values]
        shared = _decimals(scaled)
        places = [_decimals([v]) if self.each else shared for v in scaled]
        return [f"{v:.{d}f} {self.unit}".rstrip() for v, d in zip(scaled, places)]


def _decimals(values: Sequence[float]) -> int:
    """The fewest decimals (at most 9) that write every value exactly, bar rounding noise."""
    for decimals in range(10):
        if all(abs(round(v, decimals) - v) <= 1e-6 * abs(v) for v in values):
            return decimals
    return 9


def power_of_ten(value: float, _position: Any = None) -> str:
    """'2×10⁻⁷': a round tick of a log axis, in one form however large or small."""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = round(value / 10.0**exponent, 6)
    return f"{mantissa:g}×10{str(exponent).translate(_SUPERSCRIPT)}"


def log_ticks(low: float, high: float) -> list[float]:
    """Round values from ``low`` to ``high``, about seven at most (_LOG_DIGITS; over more than
    eight decades, a power of ten every few), widened past either end to LEAST_LOG_TICKS."""
    decades = math.log10(high / low)
    digits = next(digits for most, digits in _LOG_DIGITS if decades <= most)
    every = max(1, math.ceil(decades / 8))  # decades between two ticks
    first, last = math.floor(math.log10(low)) - every, math.ceil(math.log10(high)) + every
    exponents = range(first - first % every, last + 1, every)
    candidates = [d * 10.0**e for e in exponents for d in digits]
    below = [c for c in candidates if c < low]
    above = [c for c in candidates if c > high]
    ticks = [c for c in candidates if low <= c <= high]
    while len(ticks) < LEAST_LOG_TICKS:
        ticks = [below.pop(), *ticks] if len(ticks) % 2 else [*ticks, above.pop(0)]
    return ticks


def log_x(axes: Any, label: Formatter | Callable[[float, Any], str]) -> None:
    """A log x axis over what is plotted, its round ticks labelled by ``label``, the minor ones
    not (the view widens to show LEAST_LOG_TICKS)."""
    axes.set_xscale("log")
    axes.set_xticks(log_ticks(*axes.get_xlim()))
    axes.xaxis.set_major_formatter(label)
    axes.xaxis.set_minor_formatter(NullFormatter())


def duration_unit(longest_s: float) -> tuple[float, str]:
    """(seconds per unit, unit) for an axis of durations up to ``longest_s`` seconds."""
    return next((per_unit, unit) for least, per_unit, unit in DURATION_UNITS if longest_s >= least)


def clock_x(axes: Any, times: Sequence[datetime]) -> None:
    """Wall-clock time (UTC), naive datetimes: every tick HH:MM:SS (MM-DD HH:MM over more than
    a day), the date in the axis label, the view at least MIN_CLOCK_SPAN wide."""
    first, last = min(times), max(times)
    pad = max((last - first) / 20, (MIN_CLOCK_SPAN - (last - first)) / 2)
    axes.set_xlim(first - pad, last + pad)
    axes.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))
    form = "%m-%d %H:%M" if last - first > timedelta(days=1) else "%H:%M:%S"
    axes.xaxis.set_major_formatter(mdates.DateFormatter(form))
    days = f"{first:%Y-%m-%d}" + ("" if first.date() == last.date() else f" to {last:%Y-%m-%d}")
    axes.set_xlabel(f"time (UTC), {days}")
    axes.grid(axis="x", alpha=0.3)
