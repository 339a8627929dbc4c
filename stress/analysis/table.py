"""Terminal rendering of a run summary (rich)."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stress.analysis.damaged import print_warnings
from stress.analysis.grading import PASSING
from stress.analysis.rates import describe
from stress.analysis.signatures import where
from stress.analysis.summary_model import (
    OrtCompared,
    OrtNotCompared,
    Pause,
    RunSummary,
    ScenarioReference,
    Signature,
    VariantSummary,
)
from stress.factors import REGISTRY


def _cells(v: VariantSummary) -> dict[str, str]:
    """One variant's row, by column."""
    word, latency = v.verdict, v.latency_p50_ms
    cells = {"scenario": v.scenario, "variant": v.label, "id": v.variant_id}
    cells["iters"] = f"{v.iterations:,}"
    cells |= {_SHORT[g]: _graded(v, g, n) for g, n in v.grades.items() if g in _SHORT}
    cells["dist"] = str(v.distinct_outputs)
    views = f"{v.views_changed}/{v.views_rechecked}" if v.views_rechecked else "-"
    cells["views"] = views
    cells["deaths"] = str(v.deaths)
    cells["p50ms"] = "-" if latency is None else f"{latency:.3f}"
    cells["verdict"] = f"[{word.style}]{word}[/]"
    return cells


_SHORT = {"exact": "exact", "close": "close", "mismatch": "mism", "non_finite": "nan"}
_SHORT |= {"invalid": "inval", "error": "err"}
_OPTIONAL = ("close", "mism", "nan", "inval", "err", "views")  # shown when any row has one


def render_summary(summary: RunSummary, console: Console) -> None:
    table = Table(
        title=f"run {summary.run_id} ({summary.status.value}, MNN {summary.mnn_version})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
    )
    rows = [_cells(v) for v in summary.variants]
    columns = [c for c in (rows[0] if rows else {}) if c not in _OPTIONAL or _any(rows, c)]
    for column in columns:
        numeric = column not in ("scenario", "variant", "id", "verdict")
        table.add_column(
            column,
            justify="right" if numeric else "left",
            no_wrap=column != "variant",
            overflow="fold",
            min_width=24 if column == "variant" else None,
        )
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    console.print(table)
    _print_pauses(summary.pauses, console)
    console.print(
        "exact/close/mism(atch) = outputs against the clean reference (bit-identical / within "
        "tolerance / beyond it); nan = NaN or Inf appeared; inval(id) = MNN returned an error "
        "code; err(or) = MNN raised; dist(inct) = different output digests among ok "
        "iterations of one output (1 is consistent); views = retained output views that "
        "changed / were read again (output_lifetime); deaths = worker crashes, hangs, "
        "exceptions, exits.",
        style="dim",
    )
    print_references(summary.references, console)
    _print_mismatches(summary.variants, console)
    _print_rates(summary.variants, console)
    _print_repeats(summary.variants, console)
    print_signatures(summary.crash_signatures, console)
    print_signatures(summary.memcheck_signatures, console, MEMCHECK_TITLE)
    for kind, found in summary.attribution.items():
        if found.scores:  # something failed
            console.print(f"attribution ({kind}): {found.sentence}", highlight=False)
    if summary.reason:
        console.print(
            f"run {summary.status.value}: {summary.reason}", style="bold", highlight=False
        )
    print_warnings(summary.warnings, console)


def _print_pauses(pauses: list[Pause], console: Console) -> None:
    """The coordinator's pauses (manifest ``pauses``): its variants' time went on meanwhile."""
    if pauses:
        total = sum(pause.seconds for pause in pauses)
        when = ", ".join(f"{pause.at} for {pause.seconds} s" for pause in pauses[:3])
        console.print(
            f"the coordinator was paused {len(pauses)} time(s), {total:.1f} s in all ({when}"
            f"{', ...' if len(pauses) > 3 else ''}): its variants' time went on meanwhile",
            style="yellow",
            highlight=False,
        )


def _any(rows: list[dict[str, str]], column: str) -> bool:
    return any(row[column] not in ("0", "-") for row in rows)


def _graded(variant: VariantSummary, grade: str, count: int) -> str:
    return f"{count:,}" if count or variant.iterations else "-"


def print_references(references: dict[str, ScenarioReference], console: Console) -> None:
    """Which scenarios were graded against what, any reference that is doubtful, and how
    MNN's clean reference compares with ONNX Runtime's where the model came from ONNX."""
    for name, reference in references.items():
        if reference.problem:
            console.print(f"reference of {name}: {reference.problem}", style="yellow")
        independent = reference.onnxruntime
        if independent.status and independent.status != "done":
            console.print(f"ONNX Runtime reference of {name}: {independent.status}", style="dim")
        for output, found in independent.outputs.items():
            console.print(
                f"{name}: MNN's clean output {output} against ONNX Runtime: {_agreement(found)}",
                style="red" if found.grade not in ("exact", "close") else None,
                highlight=False,
            )
    tolerances = sorted({r.tolerance for r in references.values()})
    console.print(f"tolerance: {'; '.join(tolerances)}", style="dim", highlight=False)


def _agreement(found: OrtCompared | OrtNotCompared) -> str:
    if isinstance(found, OrtNotCompared):
        return f"{found.grade} ({found.detail})"
    return (
        f"{found.grade} (max|diff| {found.max_abs:.3g}, relative {found.max_rel:.3g}; "
        f"{found.differing:,} of {found.elements:,} elements differ)"
    )


def _print_mismatches(variants: list[VariantSummary], console: Console) -> None:
    """The worst mismatch of each variant that has one, and how it was graded."""
    for v in variants:
        worst = v.mismatch
        if worst is None:
            continue
        if worst.basis == "values":
            how = (
                f"max|diff| {worst.max_abs:.3g} (relative {worst.max_rel:.3g}), mean "
                f"{worst.mean_abs:.3g}; {worst.differing:,} element(s) differ, the first "
                f"at {worst.first_index}"
            )
        else:
            bound = "" if worst.max_abs is None else f"; max|diff| >= {worst.max_abs:.3g}"
            how = f"its min/max/mean are beyond the tolerance (values not stored{bound})"
        console.print(
            f"{v.variant_id} {v.label}: output {worst.output_name} mismatches in "
            f"{worst.rows:,} row(s): {how}; graded by {worst.basis}",
            highlight=False,
        )


def _print_rates(variants: list[VariantSummary], console: Console) -> None:
    """How often each variant failed, with 95 % intervals; what the clean ones rule out."""
    for v in variants:
        parts = [
            f"{name} {describe(r.count, r.n)}"
            for name, r in v.rates.items()
            if r.count and r.n and name not in PASSING
        ]
        if parts:
            console.print(f"{v.variant_id} {v.label}: " + "; ".join(parts), highlight=False)
    clean = [v for v in variants if v.clean_bound is not None]
    if clean:
        shortest = min(clean, key=lambda v: v.iterations)
        console.print(
            f"{len(clean)} variant(s) with nothing wrong; the shortest ({shortest.variant_id}) "
            f"failed {describe(0, shortest.iterations)} iterations: a rarer failure could have "
            "gone unseen.",
            style="dim",
            highlight=False,
        )


MEMCHECK_TITLE = "memcheck errors (valgrind):"


def print_signatures(
    signatures: list[Signature], console: Console, title: str = "crash signatures:"
) -> None:
    """Worker deaths (or memcheck errors) grouped by cause: kind, signal, exception or error,
    innermost frames."""
    if not signatures:
        return
    console.print(title, style="bold")
    for group in signatures:
        frames = escape(where(group))  # "[native: ...]" is no markup
        varied = {
            name: values
            for name, values in group.factors.items()
            if values != [REGISTRY[name].default]
        }
        under = " ".join(f"{k}={'|'.join(map(str, v))}" for k, v in varied.items())
        console.print(
            f"  {group.count:>5} {group.kind.value} {group.cause} at {frames}; "
            f"{len(group.variants)} variant(s), first {group.first}, last {group.last}"
            + (f"; under {under}" if under else ""),
            highlight=False,
        )


def _print_repeats(variants: list[VariantSummary], console: Console) -> None:
    """Where repeats in one process and repeats across fresh processes disagree."""
    for v in variants:
        within, across = v.distinct_within_worker, v.distinct_first_per_worker
        if within == across or max(within, across) < 2:
            continue
        console.print(
            f"{v.variant_id} {v.label}: at most {within} distinct output(s) within one "
            f"worker, {across} among the first outputs of its {v.workers} fresh workers",
            highlight=False,
        )
