"""Terminal rendering of a run summary (rich)."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stress.analysis.damaged import print_warnings
from stress.analysis.grading import PASSING
from stress.analysis.rates import describe
from stress.analysis.signatures import where
from stress.analysis.summary_model import (
    Mismatch,
    OrtCompared,
    OrtNotCompared,
    Pause,
    RunSummary,
    ScenarioReference,
    Signature,
    VariantSummary,
)
from stress.factors import REGISTRY, shown


def _cells(v: VariantSummary) -> dict[str, str]:
    """One variant's row, by column: what identifies it first, its label last."""
    word, latency = v.verdict, v.latency_p50_ms
    cells = {"verdict": f"[{word.style}]{word}[/]", "id": v.variant_id, "scenario": v.scenario}
    cells["iters"] = f"{v.iterations:,}"
    cells |= {_SHORT[g]: _graded(v, g, n) for g, n in v.grades.items() if g in _SHORT}
    cells["dist"] = str(v.distinct_outputs)
    views = f"{v.views_changed}/{v.views_rechecked}" if v.views_rechecked else "-"
    cells["views"] = views
    cells["deaths"] = str(v.deaths)
    cells["p50ms"] = "-" if latency is None else f"{latency:.3f}"
    cells["variant"] = escape(v.label)
    return cells


_SHORT = {"exact": "exact", "close": "close", "mismatch": "mism", "non_finite": "nan"}
_SHORT |= {"invalid": "inval", "error": "err"}
_OPTIONAL = ("close", "mism", "nan", "inval", "err", "views")  # shown when any row has one
_WORDS = ("verdict", "id", "scenario", "variant")  # left-aligned; the rest are numbers
NARROWEST_LABEL = 32  # a table that leaves the variant column less than this is stacked,
LABEL_LINES = 2  # as is one in which a label would take more lines than this


def render_summary(summary: RunSummary, console: Console) -> None:
    """The variants as a table where it fits the console's width with room for their
    labels, else stacked (two lines a variant); verdict, id and label always whole."""
    title = f"run {summary.run_id} ({summary.status.value}, MNN {summary.mnn_version})"
    rows = [_cells(v) for v in summary.variants]
    columns = [c for c in (rows[0] if rows else {}) if c not in _OPTIONAL or _any(rows, c)]
    fixed = [c for c in columns if c != "variant"]
    if _room_for_labels(rows, fixed, console) >= _label_room_needed(rows):
        print_lines(console, _table(title, rows, columns))
    else:
        console.print(title, style="italic", highlight=False)
        print_lines(console, _stacked(rows, fixed, console))
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


def _table(title: str, rows: list[dict[str, str]], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in columns:
        table.add_column(
            column,
            justify="left" if column in _WORDS else "right",
            no_wrap=column != "variant",
            overflow="fold",
        )
    for row in rows:
        table.add_row(*(row[c] for c in columns))
    return table


def _stacked(rows: list[dict[str, str]], fixed: list[str], console: Console) -> Group:
    """Per variant: verdict, id, scenario and label (the label wrapped under itself, never
    cut), then its numbers on a line of their own under the id."""
    verdict_width = max(len("verdict"), _widest(rows, "verdict")) + 2
    id_width = max((len(row["id"]) for row in rows), default=2) + 2
    indent, numbers = verdict_width + id_width, [c for c in fixed if c not in _WORDS]
    header = f"{'verdict':<{verdict_width}}{'id':<{id_width}}scenario variant"
    lines = [Text(header, style="bold")]
    for row in rows:
        head = Text.from_markup(row["verdict"])
        head.pad_right(verdict_width - head.cell_len)
        head.append(f"{row['id']:<{id_width}}")
        body = Text(f"{row['scenario']} ") + Text.from_markup(row["variant"])
        first, *rest = body.wrap(console, max(console.width - indent, 20), overflow="fold")
        lines += [head + first, *(Text(" " * indent) + line for line in rest)]
        present = [c for c in numbers if c not in _OPTIONAL or row[c] not in ("0", "-")]
        counts = Text(", ".join(_count(c, row[c]) for c in present), style="dim")
        under = counts.wrap(console, max(console.width - verdict_width, 20))
        lines += [Text(" " * verdict_width) + line for line in under]
    return Group(*lines)


def _count(column: str, cell: str) -> str:
    return f"p50 {cell} ms" if column == "p50ms" else f"{column} {cell}"


def _room_for_labels(rows: list[dict[str, str]], fixed: list[str], console: Console) -> int:
    """The width a table of the ``fixed`` columns at their natural widths leaves for the
    variant column on ``console`` (each column takes its padding and a separator)."""
    used = sum(max(len(c), _widest(rows, c)) + 3 for c in fixed) + 3
    return console.width - used


def _label_room_needed(rows: list[dict[str, str]]) -> int:
    widest = _widest(rows, "variant")
    return min(widest, max(NARROWEST_LABEL, -(-widest // LABEL_LINES)))


def _widest(rows: list[dict[str, str]], column: str) -> int:
    return max((Text.from_markup(row[column]).cell_len for row in rows), default=0)


def print_lines(console: Console, renderable: RenderableType) -> None:
    """Print ``renderable`` with no spaces at the ends of its lines when the console is no
    terminal (a file or a pipe gets no padding to the console's width)."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.out("\n".join(line.rstrip() for line in captured.get().splitlines()), highlight=False)


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
        console.print(
            f"{v.variant_id} {v.label}: mismatch in {v.grades.mismatch:,} of "
            f"{v.iterations:,} iterations; worst: {mismatch_words(worst)}",
            highlight=False,
        )


def mismatch_words(worst: Mismatch) -> str:
    """The worst mismatching output in words (``summary`` and ``report`` say it alike)."""
    if worst.basis == "values":
        how = (
            f"max|diff| {worst.max_abs:.3g} (relative {worst.max_rel:.3g}), mean "
            f"{worst.mean_abs:.3g}; {worst.differing:,} element(s) differ, the first "
            f"at {worst.first_index}"
        )
    else:
        bound = "" if worst.max_abs is None else f"; max|diff| >= {worst.max_abs:.3g}"
        how = f"its min/max/mean are beyond the tolerance (values not stored{bound})"
    return (
        f"output {worst.output_name!r} ({worst.rows:,} row(s) with these bytes): {how}; "
        f"graded by {worst.basis}"
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
        under = " ".join(f"{k}={'|'.join(map(shown, v))}" for k, v in varied.items())
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
