"""The run summary, defined once: what ``summarize`` returns, what every renderer reads, what
``summary --json`` and ``report --json`` print (``RunSummary.to_json``) and what
``mnn-stress schema --summary`` documents (its JSON Schema).

The builders (``stress.analysis.counts``, ``rates``, ``drift``, ``grading``, ``references``,
``signatures``, ``explain``, ``damaged``) assemble plain values; ``summarize`` validates them
into these models, which forbid unknown keys: a value a builder adds without a field here fails
every summary. Fields are declared in the order the JSON has always had. Times are ISO 8601
strings in UTC; rates are fractions (0.25, not 25 %)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from stress.analysis.verdicts import Grade, Verdict
from stress.records.events import DEATH_KINDS, EventKind
from stress.records.states import RunStatus, VariantStatus

Basis = Literal["digest", "values", "statistics", "none"]
FactorValue = Union[bool, int, float, str, None]  # noqa: UP007 (pydantic's smart union)
FailureKind = Literal["any", "mismatch", "non_finite", "invalid", "error", "death", "memcheck"]


class _Part(BaseModel):
    """Every part of the summary: unknown keys are an error, never dropped."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _ByName(_Part):
    """A part with one field per name of a fixed list (grades, event kinds)."""

    def items(self) -> Iterator[tuple[str, Any]]:
        """(name, value) in declaration order, as the JSON object lists them."""
        return iter(self)


class Pause(_Part):
    """A stretch the coordinator did not run (suspended, or the machine slept)."""

    at: str = Field(description="when it began (ISO 8601, UTC)")
    seconds: float = Field(description="how long, seconds (to 0.1 s)")


class GradeCounts(_ByName):
    """Iterations per grade; each iteration takes the worst grade of its outputs."""

    exact: int = Field(description="all outputs bit-identical to the clean reference")
    close: int = Field(description="worst output within the scenario's tolerance")
    ungraded: int = Field(description="no usable reference (or no readable output)")
    mismatch: int = Field(description="an output beyond the tolerance")
    non_finite: int = Field(description="NaN or Inf in an output")
    invalid: int = Field(description="MNN returned an error code")
    error: int = Field(description="MNN raised")


class EventCounts(_ByName):
    """Events recorded per kind (``stress.records.events.EventKind``)."""

    crash: int = Field(description="worker killed by a signal")
    hang: int = Field(description="no progress for the scenario's timeout: killed")
    memory: int = Field(description="out of memory (max_rss_mib, cgroup, MemoryError)")
    exception: int = Field(description="MNN raised outside an iteration (loading)")
    exit: int = Field(description="a non-zero exit without last words")
    protocol: int = Field(description="an unreadable record from the worker")
    harness: int = Field(description="mnn-stress's own code failed (never a finding)")
    quarantine: int = Field(description="the crash budget was spent")
    interrupted: int = Field(description="a worker stopped by a SIGTERM or by the run")
    resize: int = Field(description="a record did not fit the ring: restarted larger")
    memcheck: int = Field(description="distinct invalid accesses valgrind memcheck saw")
    native_stack: int = Field(description="gdb backtraces of earlier deaths")

    @property
    def deaths(self) -> int:
        """The worker deaths among them (``stress.records.events.DEATH_KINDS``)."""
        return sum(count for kind, count in self.items() if kind in DEATH_KINDS)


class OutcomeRate(_Part):
    """``count`` of ``n`` with its 95 % Wilson interval (None without trials)."""

    count: int = Field(description="iterations (or deaths) with the outcome")
    n: int = Field(description="trials: iterations, plus one per death for ``death``")
    rate: float | None = Field(description="count / n, a fraction")
    low: float | None = Field(description="95 % Wilson lower bound, a fraction")
    high: float | None = Field(description="95 % Wilson upper bound, a fraction")


class Rates(_ByName):
    """Per grade of the iterations, and for worker deaths per iteration tried."""

    exact: OutcomeRate
    close: OutcomeRate
    ungraded: OutcomeRate
    mismatch: OutcomeRate
    non_finite: OutcomeRate
    invalid: OutcomeRate
    error: OutcomeRate
    death: OutcomeRate = Field(description="deaths of (iterations + deaths)")


_MAX_ABS = "largest |actual - reference|; graded by statistics: a lower bound (None: unknown)"


class Mismatch(_Part):
    """A variant's worst mismatching output (by values first, then by max_abs)."""

    output_name: str
    digest: str = Field(description="xxhash digest of the output's bytes")
    basis: Basis = Field(description="how it was graded")
    max_abs: float | None = Field(description=_MAX_ABS)
    mean_abs: float | None = Field(description="mean |difference| (by values only)")
    max_rel: float | None = Field(description="largest |difference| / |reference|")
    mean_rel: float | None = Field(description="mean relative difference")
    differing: int | None = Field(description="elements not bit-identical")
    first_index: list[int] | None = Field(description="the first differing element (C order)")
    rows: int = Field(description="rows (fetches) that produced this output")


class InexactOutput(_Part):
    """One distinct output of a variant that was not bit-identical to the reference."""

    output_name: str
    digest: str = Field(description="xxhash digest of the output's bytes")
    grade: Grade
    basis: Basis = Field(description="how it was graded")
    max_abs: float | None = Field(description=_MAX_ABS)
    mean_abs: float | None = Field(description="mean |difference| (by values only)")
    max_rel: float | None = Field(description="largest |difference| / |reference|")
    mean_rel: float | None = Field(description="mean relative difference")
    differing: int | None = Field(description="elements not bit-identical")
    first_index: list[int] | None = Field(description="the first differing element (C order)")
    rows: int = Field(description="rows (fetches) that produced this output")


class Drift(_Part):
    """Least-squares slopes of RSS and latency over iterations after warm-up, per worker,
    weighted by iterations (``stress.analysis.drift``)."""

    rss_bytes_per_1k_iterations: float = Field(description="RSS slope, bytes per 1,000 it.")
    rss_bytes_per_hour: float | None = Field(
        description="RSS slope over wall-clock time, bytes/h (None: the fit spans less than "
        "drift.MIN_RATE_SPAN_S seconds)"
    )
    rss_growth_bytes: float = Field(description="fitted RSS growth over the variant, bytes")
    rss_median_growth_bytes: float = Field(
        description="median RSS of the last third of the fitted iterations minus that of the "
        "first third, summed over workers (one spike cannot move it)"
    )
    latency_trend: float | None = Field(description="fitted end / fitted start latency")
    latency_median_ratio: float | None = Field(
        description="median latency of the last third of the fitted iterations over that of "
        "the first third"
    )
    latency_t: float = Field(description="smallest latency slope / its standard error")
    fitted_iterations: float = Field(description="iterations the fit used")
    wall_span_s: float = Field(description="wall-clock seconds the fit spans (longest worker)")
    flags: list[Literal["rss_growth", "latency_drift"]] = Field(
        description="slopes beyond what noise and allocator caches explain"
    )


class VariantSummary(_Part):
    """One variant: where it stood, its counts, grades, rates, drift, deaths and verdict."""

    variant_id: str
    scenario: str
    label: str = Field(description="its factor values that are not the defaults")
    status: VariantStatus = Field(description="as the manifest says (killed: coordinator gone)")
    iterations: int = Field(description="iterations with rows on disk")
    ok: int = Field(description="iterations where MNN returned normally")
    invalid: int = Field(description="iterations where MNN returned an error code")
    error: int = Field(description="iterations where MNN raised")
    distinct_outputs: int = Field(description="most distinct digests of one output (1: same)")
    non_finite: int = Field(description="iterations with NaN or Inf in an output")
    workers: int = Field(description="worker processes that recorded iterations")
    distinct_within_worker: int = Field(description="most distinct digests in one worker")
    distinct_first_per_worker: int = Field(description="distinct first outputs of workers")
    views_rechecked: int = Field(description="retained output views read again later")
    views_changed: int = Field(description="of those, views whose contents had changed")
    grades: GradeCounts
    mismatch: Mismatch | None = Field(description="the worst mismatch, if any")
    graded_by: dict[Grade, list[Basis]] = Field(description="per inexact grade: how graded")
    inexact_outputs: list[InexactOutput] = Field(description="the 50 most frequent")
    latency_p50_ms: float | None = Field(description="median iteration latency, milliseconds")
    latency_p99_ms: float | None = Field(description="99th percentile latency, milliseconds")
    drift: Drift | None = Field(description="None: too few iterations for a slope")
    memcheck_slowdown: float | None = Field(
        description="under valgrind: p50 latency / that of the same variant without memcheck"
    )
    onnxruntime_disagrees: bool = Field(
        description="its scenario's clean MNN output, which its grades compare with, "
        "disagrees with ONNX Runtime (``ScenarioReference.onnxruntime``)"
    )
    events: EventCounts
    completed: int | None = Field(description="iterations the run counted (None: unknown)")
    deaths_counted: int = Field(description="worker deaths the run counted")
    verdict: Verdict = Field(description="one word: what to look at first")
    rates: Rates
    clean_bound: float | None = Field(
        description="nothing wrong: the failure rate ruled out at 95 % (rule of three, 3/n)"
    )

    @property
    def deaths(self) -> int:
        """Its worker deaths: as their events say, or as the run counted them where events
        are missing (a death whose event was lost is still a death)."""
        return max(self.events.deaths, self.deaths_counted)


class OrtCompared(_Part):
    """MNN's clean reference output against ONNX Runtime's, element by element."""

    grade: Literal["exact", "close", "mismatch"]
    max_abs: float = Field(description="largest |MNN - ONNX Runtime|")
    max_rel: float = Field(description="largest relative difference")
    differing: int = Field(description="elements not bit-identical")
    elements: int = Field(description="elements compared")


class OrtNotCompared(_Part):
    """An output that could not be compared value by value, and why."""

    grade: Literal["missing", "ungraded", "mismatch", "non_finite"]
    detail: str


class OnnxRuntimeCheck(_Part):
    """The scenario's clean reference against ONNX Runtime (models converted from ONNX)."""

    status: str | None = Field(description="done, or why not (None: not an ONNX model)")
    outputs: dict[str, OrtCompared | OrtNotCompared] = Field(description="per output name")

    @property
    def disagrees(self) -> bool:
        """MNN's clean output is not what ONNX Runtime gives: an output beyond the tolerance,
        non-finite or missing on one side. Every variant graded against it inherits that."""
        passing = {grade.value for grade in Grade if grade.passing}
        return any(found.grade not in passing for found in self.outputs.values())


class ScenarioReference(_Part):
    """What a scenario's outputs were graded against."""

    outputs: list[str] = Field(description="output names the clean reference has")
    digests: dict[str, str] = Field(description="per output name: the reference's digest")
    problem: str | None = Field(description="why the reference is missing or doubtful")
    tolerance: str = Field(description="the scenario's default tolerance, in words")
    onnxruntime: OnnxRuntimeCheck


class Signature(_Part):
    """Worker deaths (or memcheck errors) of one cause."""

    kind: EventKind
    cause: str = Field(description="the signal, exception type or memcheck error kind")
    frames: list[str] = Field(description="innermost Python (or native) frames, file:function")
    native_frames: list[str] = Field(description="innermost frames where the signal struck")
    count: int
    first: str = Field(description="ISO 8601, UTC, to the second")
    last: str = Field(description="ISO 8601, UTC, to the second")
    variants: list[str] = Field(description="variant ids, sorted")
    factors: dict[str, list[FactorValue]] = Field(
        description="per factor: the values it occurred under. A mapping: the factors are "
        "the registry's (stress.factors.REGISTRY), which grows without a schema change"
    )


class FactorScore(_Part):
    """A factor value (or pair) against comparable variants without it."""

    predicate: str = Field(description="'api=module' or 'api=module and threads=2'")
    with_: str = Field(alias="with", description="'failed of n' with the predicate")
    failed_with: int
    n_with: int
    failed_without: int
    n_without: int
    rate_with: float
    ci_with: tuple[float, float] = Field(description="95 % Wilson interval")
    without: str = Field(description="'failed of n' without the predicate")
    rate_without: float
    ci_without: tuple[float, float] = Field(description="95 % Wilson interval")
    matched: bool = Field(description="False: no comparable variant, all others stand in")
    increase: float = Field(description="rate with minus rate without")
    increase_low: float
    increase_high: float
    importance: float = Field(description="harmonic mean of increase and recall (0: none)")


class AttributionFinding(_Part):
    """Which factor values explain one kind of failure (``stress.analysis.attribution``)."""

    sentence: str
    explanation: str | None = Field(description="the one conjunction that separates, if any")
    confounded: list[list[str]] = Field(description="factor values always seen together")
    scores: list[FactorScore] = Field(description="the 10 best, best first")


class DamagedFile(_Part):
    """A part file that could not be read whole (``stress.records.damage.DamagedPart``)."""

    dataset: str = Field(description="its folder, relative to the run directory")
    file: str
    size: int = Field(description="bytes")
    error: str
    rows: int | None = Field(description="as its footer says (None: unreadable)")
    when: str = Field(description="when found damaged (ISO 8601, UTC)")
    set_aside: str | None = Field(description="where it was moved, if it was")


class Shortfall(_Part):
    """A variant with fewer rows (or death events) read than the run counted."""

    variant_id: str
    scenario: str
    label: str
    counted: int
    read: int


class Damage(_Part):
    """What could not be read: never a finding about MNN."""

    parts: list[DamagedFile]
    rows_missing: list[Shortfall]
    deaths_missing: list[Shortfall]
    unreadable: list[str] = Field(description="the manifest or journal, and why")


class RunSummary(_Part):
    """A run, as ``summary``, ``report`` and ``compare`` see it."""

    run_id: str
    status: RunStatus = Field(description="killed: running, but its coordinator is gone")
    reason: str | None = Field(description="why the run ended as it did")
    started: str = Field(description="ISO 8601, UTC")
    ended: str | None = Field(description="ISO 8601, UTC (None: not ended)")
    pauses: list[Pause]
    mnn_version: str | None
    references: dict[str, ScenarioReference] = Field(description="per scenario name")
    variants: list[VariantSummary]
    crash_signatures: list[Signature] = Field(description="worker deaths, most frequent first")
    memcheck_signatures: list[Signature]
    attribution: dict[FailureKind, AttributionFinding] = Field(
        description="per failure kind that occurred; 'any': all of them together"
    )
    damage: Damage
    warnings: list[str] = Field(description="the damage in sentences, as renderers show it")

    def variant(self, variant_id: str) -> VariantSummary:
        """The variant of that id; KeyError if the run has none."""
        for variant in self.variants:
            if variant.variant_id == variant_id:
                return variant
        raise KeyError(f"run {self.run_id} has no variant {variant_id!r}")

    def to_json(self) -> str:
        """As ``--json`` prints it: plain JSON (Infinity where a value is infinite)."""
        return json.dumps(self.model_dump(by_alias=True), indent=2)


def summary_schema() -> dict[str, Any]:
    """The JSON Schema of ``RunSummary`` (``mnn-stress schema --summary``)."""
    return RunSummary.model_json_schema(mode="serialization")
