"""One variant's outcome in a run, as one label that can be compared across MNN versions
(``mnn-stress bisect``): how the worst of its iterations went, and how often.

From worst to best: a crash (by which signal), memory or hang deaths, raising (which exception
type, in an iteration or while setting up), another non-zero exit, a non-zero return code
(which codes), NaN or Inf in outputs, retained outputs that changed, outputs that differ from
run to run of the same inputs (silently), and consistent. Beside the label: the most frequent
output (its digest), which can change between versions while the label does not.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from stress.analysis.dataset import events_table, iterations_table
from stress.analysis.signatures import cause
from stress.analysis.summary import summarize
from stress.records.events import DEATH_KINDS

CONFIDENCE_RUNS = 3  # "none in n runs" puts the rate below 3/n at 95 % (the rule of three)
_DEATHS_WORST_FIRST = ("crash", "memory", "hang")
DIGEST_SHOWN = 8  # hex digits of an output digest in labels

Deaths = dict[tuple[str, str], int]  # (kind, signal / exception type / exit code) -> count


class HarnessFailure(Exception):
    """The run failed in mnn-stress's own code (a broken environment): no outcome of MNN."""


@dataclass(frozen=True)
class Outcome:
    """``kind`` and ``detail`` make the label compared across versions; ``seen`` of ``n``
    attempts (iterations, and deaths before one) showed it. ``ran`` is the MNN version the
    workers reported (None: none said), ``output`` the most frequent output's digest."""

    kind: str
    detail: str
    seen: int
    n: int
    ran: str | None = None
    output: str | None = None
    run_dir: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.detail}" if self.detail else self.kind

    def rate(self) -> str:
        if self.kind == "differs":
            return f"{self.seen} distinct outputs in {self.n}"
        if self.kind == "consistent" or self.seen == 0:
            bound = CONFIDENCE_RUNS / self.n if self.n else 1.0
            return f"none in {self.n} (rate < {100 * bound:.2g} %)"
        return f"{self.seen} of {self.n} ({self.seen / self.n:.0%})"


def classify(run_dir: Path, variant_id: str) -> Outcome:
    """The variant's outcome in the run at ``run_dir``."""
    variant = summarize(run_dir).variant(variant_id)
    found, reported = _deaths(run_dir, variant_id)
    rows = _row_facts(run_dir, variant_id)
    deaths = sum(found.values())
    common = {
        "n": variant.iterations + deaths,
        "ran": "|".join(sorted(rows["ran"] | reported)) or None,
        "output": rows["output"],
        "run_dir": str(run_dir),
    }
    for kind in _DEATHS_WORST_FIRST:
        if _count(found, kind):
            return Outcome(kind, _causes(found, kind), _count(found, kind), **common)
    raising = _count(found, "exception") + variant.error
    if raising:
        types = {c for k, c in found if k == "exception"} | rows["exceptions"]
        return Outcome("raises", "|".join(sorted(types)), raising, **common)
    if deaths:  # exit codes, unreadable records
        return Outcome("exits", "|".join(sorted(c for _, c in found)), deaths, **common)
    if variant.invalid:
        codes = ", ".join(map(str, sorted(rows["codes"])))
        return Outcome("rc≠0", f"(rc {codes})", variant.invalid, **common)
    for kind, seen in (("non-finite", variant.non_finite), ("view changed", variant.views_changed)):
        if seen:
            return Outcome(kind, "", seen, **common)
    if variant.distinct_outputs > 1:
        return Outcome("differs", "", variant.distinct_outputs, **common)
    return Outcome("consistent", "", 0, **common)


def _deaths(run_dir: Path, variant_id: str) -> tuple[Deaths, set[str]]:
    """Deaths by kind and cause, and the MNN versions the dead workers had reported. A
    harness error is no outcome of MNN's: HarnessFailure."""
    table = events_table(
        run_dir,
        columns=["kind", "signal", "message", "exit_code", "mnn_version"],
        filter=pc.field("variant_id") == variant_id,
    )
    found: Deaths = collections.Counter()
    for event in table.to_pylist():
        kind = event["kind"]
        if kind == "harness":
            raise HarnessFailure(event["message"])
        if kind in DEATH_KINDS:
            why = cause(kind, event["signal"], event["message"])
            found[(kind, f"code {event['exit_code']}" if kind == "exit" else why)] += 1
    return dict(found), {v for v in table["mnn_version"].to_pylist() if v is not None}


def _count(found: Deaths, kind: str) -> int:
    return sum(n for (k, _), n in found.items() if k == kind)


def _causes(found: Deaths, kind: str) -> str:
    return "|".join(sorted(c for k, c in found if k == kind))


def _row_facts(run_dir: Path, variant_id: str) -> dict[str, Any]:
    """From the rows recorded as iterations ran: the versions that ran, the exception types of
    error rows, the return codes of invalid rows, and the most frequent digest per output."""
    table = iterations_table(
        run_dir,
        columns=["status", "error", "rc", "mnn_version", "output_name", "digest", "observation"],
        filter=(pc.field("variant_id") == variant_id)
        & (pc.field("observation").is_null() | (pc.field("observation") == "fetch")),
    )
    rows = table.drop_columns(["observation"]).to_pylist()
    digests: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in rows:
        if row["status"] == "ok" and row["digest"] is not None:
            digests[row["output_name"]][row["digest"]] += 1
    output = " ".join(
        f"{name}:{counts.most_common(1)[0][0][:DIGEST_SHOWN]}"
        for name, counts in sorted(digests.items())
    )
    return {
        "ran": {r["mnn_version"] for r in rows if r["mnn_version"] is not None},
        "exceptions": {cause("error", None, r["error"]) for r in rows if r["status"] == "error"},
        "codes": {r["rc"] for r in rows if r["status"] == "invalid"},
        "output": output or None,
    }
