"""The morning view in the terminal: ``mnn-stress report``. The same analysis as ``summary``
(``stress.analysis.summary.summarize``), rendered at length: a paragraph per variant, then
attribution, crash signatures and drift; and the exit status cron alerts on."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from stress.analysis.counts import death_words
from stress.analysis.damaged import print_warnings
from stress.analysis.grading import PASSING
from stress.analysis.rates import describe
from stress.analysis.summary_model import AttributionFinding, RunSummary, VariantSummary
from stress.analysis.table import (
    MEMCHECK_TITLE,
    mismatch_words,
    print_references,
    print_signatures,
)
from stress.analysis.verdicts import FINDINGS


def has_findings(summary: RunSummary) -> bool:
    """Whether anything other than exact or close outcomes occurred: a failing grade, a death,
    a changed view, outputs that differ run to run, a refusal, a harness error, or a clean
    reference that ONNX Runtime disagrees with."""
    disagrees = any(r.onnxruntime.disagrees for r in summary.references.values())
    return disagrees or any(v.verdict in FINDINGS for v in summary.variants)


def render_report(summary: RunSummary, console: Console) -> None:
    console.print(
        f"[bold]run {summary.run_id}[/] ({summary.status.value}, MNN {summary.mnn_version}), "
        f"{summary.started} to {summary.ended or 'now'}",
        highlight=False,
    )
    if summary.reason:
        console.print(f"  {summary.reason}", highlight=False, markup=False)
    print_warnings(summary.warnings, console, "  ")
    verdicts: dict[str, int] = {}
    for v in summary.variants:
        verdicts[v.verdict.value] = verdicts.get(v.verdict.value, 0) + 1
    console.print(", ".join(f"{n} {word}" for word, n in sorted(verdicts.items())))
    print_references(summary.references, console)
    console.print()
    for v in sorted(summary.variants, key=lambda v: v.verdict.severity):  # worst first
        console.print(_variant(v), highlight=False)
    _print_attribution(summary.attribution, console)
    print_signatures(summary.crash_signatures, console)
    print_signatures(summary.memcheck_signatures, console, MEMCHECK_TITLE)


def _variant(v: VariantSummary) -> str:
    """A few lines: verdict, outcomes with rates, deaths, latency, memory."""
    head = f"[bold]{v.verdict}[/] {escape(v.scenario)} {escape(v.label)} ({v.variant_id}):"
    graded = ", ".join(f"{g} {n:,}" for g, n in v.grades.items() if n)
    lines = [f"{head} {v.iterations:,} iterations: {graded or 'none'}"]
    for name, r in v.rates.items():
        if r.count and name not in PASSING:
            lines.append(f"    {name}: {describe(r.count, r.n)}")
    if v.clean_bound is not None:
        lines.append(f"    nothing wrong: {describe(0, v.iterations)}")
    deaths = death_words(v)
    if deaths:
        lines.append(f"    deaths: {deaths}")
    if v.events.memcheck:
        lines.append(f"    memcheck: {v.events.memcheck} distinct invalid access(es)")
    if v.memcheck_slowdown:
        slower = v.memcheck_slowdown
        lines.append(f"    under valgrind: p50 {slower:.0f}x the same variant without it")
    if v.mismatch:
        lines.append(f"    worst mismatch: {escape(mismatch_words(v.mismatch))}")
    if v.onnxruntime_disagrees:
        lines.append(
            "    graded against MNN's clean reference of its scenario, and ONNX Runtime "
            "disagrees with that reference (above)"
        )
    lines.append("    " + _performance(v))
    return "\n".join(lines)


def _performance(v: VariantSummary) -> str:
    if v.latency_p50_ms is None:
        return "latency: none recorded"
    text = f"latency p50 {v.latency_p50_ms:.3f} ms, p99 {v.latency_p99_ms:.3f} ms"
    drift = v.drift
    if drift is None:
        return text + "; too few iterations for a memory slope"
    text += f"; RSS {_bytes(drift.rss_bytes_per_1k_iterations)}/1k iterations"
    if drift.rss_bytes_per_hour is not None:  # a fit too short in time gives no rate per hour
        text += f" ({_bytes(drift.rss_bytes_per_hour)}/h)"
    if drift.latency_trend is not None:
        text += f"; latency trend x{drift.latency_trend:.2f}"
    if drift.flags:
        text += f" [yellow]flagged: {', '.join(drift.flags)}[/]"
    return text


def _bytes(value: float) -> str:
    sign = "-" if value < 0 else "+"
    size = abs(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{sign}{size:.3g} {unit}"
        size /= 1024
    return f"{sign}{size:.3g} GiB"


def _print_attribution(attribution: dict[str, AttributionFinding], console: Console) -> None:
    """Per failure kind: the sentence, then the best-ranked factor values."""
    console.print()
    console.print("attribution:", style="bold")
    for kind, found in attribution.items():
        console.print(f"  {kind}: {found.sentence}", highlight=False, markup=False)
        for score in found.scores[:3]:
            if score.importance <= 0:
                continue
            console.print(
                f"      {score.predicate}: {score.with_} with, {score.without} "
                f"without{'' if score.matched else ' (no comparable variant)'}; "
                f"increase {score.increase:+.3g} (at least {score.increase_low:+.3g})",
                highlight=False,
                markup=False,
            )
