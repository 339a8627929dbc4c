"""The states a variant and a run can be in, defined once (manifest, journal, summary, CLI)."""

from __future__ import annotations

from enum import Enum


class VariantStatus(str, Enum):
    PENDING = "pending"  # not started yet, or waiting for a replacement worker
    RUNNING = "running"
    DONE = "done"  # its budget is used up
    QUARANTINED = "quarantined"  # more worker deaths than max_crashes
    REFUSED = "refused"  # a deliberate misuse that failed while its worker set up: the outcome
    FAILED = "failed"  # the harness itself failed on it (a bug of ours, never a finding)
    INTERRUPTED = "interrupted"  # started, then the run was stopped
    SKIPPED = "skipped"  # never started: the run stopped first
    KILLED = "killed"  # never written: unfinished when its coordinator died (readers say so)
    UNKNOWN = "unknown"  # never written: the manifest cannot be read (readers say so)

    @property
    def finished(self) -> bool:
        return self in (
            VariantStatus.DONE,
            VariantStatus.QUARANTINED,
            VariantStatus.REFUSED,
            VariantStatus.FAILED,
        )


class RunStatus(str, Enum):
    RUNNING = "running"
    COMPLETE = "complete"  # every variant ran its budget (or was quarantined)
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGTERM
    FAILED = "failed"  # the harness could not go on (disk full, harness error, nothing ran)
    KILLED = "killed"  # never written: what a reader concludes when the coordinator is gone
    UNKNOWN = "unknown"  # never written: what a reader says when the manifest cannot be read
