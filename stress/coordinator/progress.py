"""What a worker's records tell its variant's state: iterations completed, where each thread
goes on, outcomes by status, and when each thread last reported (for the per-thread hang
check). One record at a time, or a whole batch at once with the same result."""

from __future__ import annotations

import numpy as np

from stress.contract.protocol import IterationRecord, Observation
from stress.coordinator.plan import VariantState
from stress.records.iteration_batch import IterationBatch


def count_record(
    state: VariantState, thread_progress: dict[int, float], record: IterationRecord, now: float
) -> int:
    """A record's progress on its variant's state; returns its RSS."""
    thread_progress[record.thread] = now
    if record.observation == Observation.FETCH:  # not a later look at an old output
        state.completed += 1
        state.next_iterations[record.thread] = record.iteration + 1
        state.outcomes[record.status] += 1
    return record.rss_bytes


def count_batch(
    state: VariantState, thread_progress: dict[int, float], batch: IterationBatch, now: float
) -> int:
    """``count_record`` for every record of a batch at once; returns their largest RSS."""
    head = batch.head
    fetched = batch.fetched()
    for thread, iteration in batch.last_iterations(fetched).items():
        state.next_iterations[thread] = iteration + 1
    for thread in set(head["thread"].tolist()):
        thread_progress[thread] = now
    statuses = head["status"][fetched]
    state.completed += len(statuses)
    for status, count in enumerate(np.bincount(statuses).tolist()):
        if count:
            state.outcomes[status] += count
    return int(head["rss_bytes"].max())
