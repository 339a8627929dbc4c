"""Steady-state throughput of one or more threads from their iterations' start timestamps.

Shared by bench/bare_loop.py (which runs as a script, so this stays numpy-only) and
bench/overhead.py (the harness's rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def window_rate(stamps: Sequence[np.ndarray]) -> float:
    """Total iterations/s over all threads while every thread was running.

    ``stamps`` holds, per thread, the start times (ns, any clock shared by the threads) of its
    iterations. The window runs from the last thread's first iteration to the first thread's
    last one, so neither the staggered start nor the tail where some threads have finished
    their budget counts. For one thread this is ``(n - 1) / (last - first)``.
    """
    per_thread = [np.asarray(s, dtype=np.int64) for s in stamps if len(s)]
    if not per_thread:
        raise ValueError("no iterations")
    low = max(int(s.min()) for s in per_thread)
    high = min(int(s.max()) for s in per_thread)
    if high <= low:
        raise ValueError("the threads never ran at the same time")
    inside = sum(int(((s >= low) & (s <= high)).sum()) for s in per_thread)
    return (inside - 1) / ((high - low) / 1e9)
