"""Output digests and statistics: xxh3-64, nan and inf counts, min/max/mean over the finite
elements.

Vectorised over many outputs of the same size and dtype at once, so recording costs little
per row however many rows there are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xxhash

digest = xxhash.xxh3_64_hexdigest  # of an output's bytes: the ``digest`` column (16 hex digits)
NO_STATS = (None,) * 5
CHUNK_ELEMENTS = 1 << 20  # elements looked at at once where some are not finite
STAT_NAMES = ("nan_count", "inf_count", "min", "max", "mean")


def as_block(data: list[bytes], dtype: str) -> np.ndarray:
    """Same-sized outputs (bytes-like) as one (rows, elements) array; one output is not copied."""
    joined = data[0] if len(data) == 1 else b"".join(data)
    return np.frombuffer(joined, dtype=dtype).reshape(len(data), -1)


def summable(dtype: str | None, size: int) -> bool:
    return dtype not in (None, "unknown") and size > 0


def block_statistic_arrays(block: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row: nan count, inf count, min, max and mean over the finite elements, and whether
    the row has any finite element (min/max/mean are meaningless where it has none)."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in a sum: NaN, no warning
        mean = block.mean(axis=1, dtype=np.float64)
    if np.isfinite(mean).all():  # the usual case: a NaN or inf anywhere would show in its mean
        nothing = np.zeros(len(block), np.int64)
        return nothing, nothing, block.min(axis=1), block.max(axis=1), mean, nothing == 0
    return _non_finite_statistics(block)


def _non_finite_statistics(block: np.ndarray) -> tuple[np.ndarray, ...]:
    """``block_statistic_arrays`` where some element is NaN or inf: the finite elements
    picked out in float64, a few columns at a time, so a 256 MiB output needs tens of MiB of
    temporaries, not four times its size."""
    rows = len(block)
    nan, count = np.zeros(rows, np.int64), np.zeros(rows, np.int64)
    low, high, total = np.full(rows, np.inf), np.full(rows, -np.inf), np.zeros(rows)
    step = max(1, CHUNK_ELEMENTS // max(1, rows))
    for start in range(0, block.shape[1], step):
        part = block[:, start : start + step]
        finite = np.isfinite(part)
        count += finite.sum(axis=1)
        if part.dtype.kind == "f":
            nan += np.isnan(part).sum(axis=1)
        wide = part.astype(np.float64)
        with np.errstate(invalid="ignore"):
            low = np.minimum(low, np.where(finite, wide, np.inf).min(axis=1))
            high = np.maximum(high, np.where(finite, wide, -np.inf).max(axis=1))
            total += np.where(finite, wide, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
    return nan, block.shape[1] - count - nan, low, high, mean, count > 0


def block_statistics(block: np.ndarray) -> tuple[list[Any], ...]:
    """Per row: nan count, inf count, and min/max/mean over the finite elements (None if none)."""
    nan, inf, low, high, mean, some = block_statistic_arrays(block)
    pick = lambda values: [float(v) if ok else None for v, ok in zip(values, some)]  # noqa: E731
    return nan.tolist(), inf.tolist(), pick(low), pick(high), pick(mean)


def output_statistics(data: list[bytes | None], dtypes: list[str | None]) -> dict[str, list]:
    """Statistics for a batch of outputs, vectorised over the outputs of equal size and dtype."""
    return statistics_columns([None if d is not None else NO_STATS for d in data], data, dtypes)


def statistics_columns(
    stats: list[tuple | None], data: list[bytes | None], dtypes: list[str | None]
) -> dict[str, list]:
    """Fill the rows whose statistics are still None from their data, in batches."""
    stats = list(stats)
    groups: dict[tuple[str | None, int], list[int]] = {}
    for i, row in enumerate(stats):
        if row is None:
            groups.setdefault((dtypes[i], len(data[i])), []).append(i)
    for (dtype, size), rows in groups.items():
        if not summable(dtype, size):
            for i in rows:
                stats[i] = NO_STATS
            continue
        computed = block_statistics(as_block([data[i] for i in rows], dtype))
        for position, i in enumerate(rows):
            stats[i] = tuple(column[position] for column in computed)
    return {name: [row[k] for row in stats] for k, name in enumerate(STAT_NAMES)}
