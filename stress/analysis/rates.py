"""How often, with how much confidence: rates with 95 % Wilson intervals per outcome.

Where nothing failed, the rule of three says what the count rules out: 0 of n means the rate
is below 3/n at 95 % confidence, so a user can tell whether a night was long enough.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054  # two-sided 95 %


@dataclass(frozen=True)
class Rate:
    """``count`` of ``n`` with a 95 % Wilson interval [low, high]."""

    count: int
    n: int
    rate: float | None
    low: float | None
    high: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson(count: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (count of n, n > 0)."""
    if n <= 0 or not 0 <= count <= n:
        raise ValueError(f"no interval for {count} of {n}")
    p = count / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(count: int, n: int) -> Rate:
    if n == 0:
        return Rate(count, 0, None, None, None)
    low, high = wilson(count, n)
    return Rate(count, n, count / n, low, high)


def rule_of_three(n: int) -> float | None:
    """The 95 % upper bound on a rate of which 0 of n were seen (None without trials)."""
    return 3 / n if n > 0 else None


def variant_rates(variant: dict[str, Any], deaths: int, clean: bool) -> dict[str, Any]:
    """Per graded outcome of the variant's iterations, and for worker deaths per iteration
    tried (each death cost one): count, rate and interval; and for a ``clean`` variant
    (nothing wrong at all) the rate its iterations rule out."""
    n = variant["iterations"]
    rates = {grade: rate(count, n).as_dict() for grade, count in variant["grades"].items()}
    rates["death"] = rate(deaths, n + deaths).as_dict()
    return {"rates": rates, "clean_bound": rule_of_three(n) if clean else None}


def describe(count: int, n: int) -> str:
    """'3 of 1,000 (0.3 %, 95 % CI 0.1–0.9 %)' or '0 of 1,000 (< 0.3 % at 95 %)'."""
    if n == 0:
        return "no iterations"
    if count == 0:
        return f"0 of {n:,} (< {_percent(3 / n)} at 95 %)"
    low, high = wilson(count, n)
    return f"{count:,} of {n:,} ({_percent(count / n)}, 95 % CI {_percent(low)}–{_percent(high)})"


def _percent(value: float) -> str:
    percent = 100 * min(value, 1.0)
    return f"{percent:.2g} %" if percent < 10 else f"{percent:.0f} %"
