"""How far an output may be from its reference and still be ``close``.

The default follows MNN's own test tools: NaN and Inf fail, and the largest absolute difference
may be at most ``rtol`` (0.01) of the reference's largest magnitude (at least 1e-4). Other
statistics follow Polygraphy: ``elementwise`` holds every element to ``atol + rtol * |expected|``;
``max``, ``mean`` and ``quantile`` pass when that statistic of the absolute difference is at most
``atol`` or that of the relative difference at most ``rtol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STATISTICS = ("mnn", "elementwise", "max", "mean", "quantile")
MNN_FLOOR = 1e-4  # MNN's tools: the reference's magnitude is taken as at least this


@dataclass(frozen=True)
class Tolerance:
    statistic: str = "mnn"
    atol: float = 0.0
    rtol: float = 0.01
    quantile: float = 0.99

    def describe(self) -> str:
        if self.statistic == "mnn":
            return f"max|diff| <= {self.atol:g} + {self.rtol:g} x max(max|expected|, 1e-4)"
        if self.statistic == "elementwise":
            return f"every |diff| <= {self.atol:g} + {self.rtol:g} x |expected|"
        stat = f"q{self.quantile:g}" if self.statistic == "quantile" else self.statistic
        return f"{stat}|diff| <= {self.atol:g} or {stat}(|diff|/|expected|) <= {self.rtol:g}"


def tolerances_for(spec: dict[str, Any] | None, output: str) -> Tolerance:
    """The tolerance of one output: the scenario's ``tolerance`` with the output's own
    settings (``tolerance.outputs.NAME``) over it; MNN's default where nothing is given."""
    spec = dict(spec or {})
    per_output = (spec.pop("outputs", None) or {}).get(output) or {}
    merged = {**spec, **{k: v for k, v in per_output.items() if v is not None}}
    return Tolerance(**{k: v for k, v in merged.items() if v is not None})


@dataclass(frozen=True)
class Difference:
    """How an output differs from its reference."""

    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    differing: int  # elements that are not bit-identical
    first_index: list[int] | None  # the first differing element's position (C order)
    passed: bool  # within the tolerance


def compare(actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance) -> Difference:
    """The difference of two same-shaped arrays, and whether it is within ``tolerance``."""
    if actual.shape != expected.shape:
        raise ValueError(f"shape {actual.shape} is not the reference's {expected.shape}")
    wide, reference = actual.astype(np.float64), expected.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        absolute = np.abs(wide - reference)
        magnitude = np.abs(reference)
        relative = np.where(magnitude > 0, absolute / np.where(magnitude > 0, magnitude, 1), 0)
        relative = np.where((magnitude == 0) & (absolute > 0), np.inf, relative)
    differs = _differs(actual, expected)
    flat_first = int(np.argmax(differs)) if differs.any() else None
    return Difference(
        max_abs=_stat(absolute, np.max),
        mean_abs=_stat(absolute, np.mean),
        max_rel=_stat(relative, np.max),
        mean_rel=_stat(relative, np.mean),
        differing=int(differs.sum()),
        first_index=None
        if flat_first is None
        else [int(i) for i in np.unravel_index(flat_first, actual.shape)],
        passed=bool(within(absolute, relative, magnitude, tolerance)),
    )


def _differs(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Per element (flat): not bit-identical."""
    a = np.ascontiguousarray(actual).reshape(-1)
    e = np.ascontiguousarray(expected).reshape(-1)
    if a.dtype != e.dtype or a.dtype.itemsize not in (1, 2, 4, 8):
        return a != e
    bits = np.dtype(f"u{a.dtype.itemsize}")
    return a.view(bits) != e.view(bits)


def _stat(values: np.ndarray, how) -> float:
    return float(how(values)) if values.size else 0.0


def within(
    absolute: np.ndarray, relative: np.ndarray, magnitude: np.ndarray, tolerance: Tolerance
) -> bool:
    """Whether the differences pass ``tolerance``; NaN anywhere never passes."""
    if absolute.size == 0:
        return True
    if np.isnan(absolute).any():
        return False
    atol, rtol = tolerance.atol, tolerance.rtol
    if tolerance.statistic == "mnn":
        return absolute.max() <= atol + rtol * max(float(magnitude.max()), MNN_FLOOR)
    if tolerance.statistic == "elementwise":
        return bool(np.all(absolute <= atol + rtol * magnitude))
    if tolerance.statistic == "max":
        return absolute.max() <= atol or relative.max() <= rtol
    if tolerance.statistic == "mean":
        return absolute.mean() <= atol or relative.mean() <= rtol
    q = tolerance.quantile
    return np.quantile(absolute, q) <= atol or np.quantile(relative, q) <= rtol


def statistics_within(
    actual: tuple[float | None, float | None, float | None],
    expected: tuple[float | None, float | None, float | None],
    tolerance: Tolerance,
) -> bool:
    """Without stored values: whether min, max and mean each differ by no more than the
    tolerance allows the largest difference (a necessary condition for ``close``)."""
    if None in actual or None in expected:
        return actual == expected
    magnitude = max(abs(expected[0]), abs(expected[1]), MNN_FLOOR)
    allowed = tolerance.atol + tolerance.rtol * magnitude
    return all(abs(a - e) <= allowed for a, e in zip(actual, expected))
