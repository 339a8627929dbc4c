"""Terminal rendering of a run summary (rich)."""

from __future__ import annotations

from collections import Counter

from rich.cells import cell_len
from rich.console import Console, Group
from rich.text import Text

from stress.analysis.damaged import print_warnings
from stress.analysis.grading import PASSING
from stress.analysis.rates import describe
from stress.analysis.signatures import varied, where
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
from stress.analysis.verdicts import Grade, Verdict


def _cells(v: VariantSummary) -> dict[str, str]:
    """One variant's row, by column: what identifies it first, its label last."""
    word, latency = v.verdict, v.latency_p50_ms
    cells = {"verdict": str(word), "id": v.variant_id, "scenario": v.scenario}
    cells["iters"] = f"{v.iterations:,}"
    cells |= {_SHORT[g]: _graded(v, g, n) for g, n in v.grades.items() if g in _SHORT}
    cells["dist"] = str(v.distinct_outputs)
    views = f"{v.views_changed}/{v.views_rechecked}" if v.views_rechecked else "-"
    cells["views"] = views
    cells["deaths"] = str(v.deaths)
    cells["p50ms"] = "-" if latency is None else f"{latency:.3f}"
    cells["variant"] = v.label
    return cells


_SHORT = {g.value: g.short for g in Grade if g is not Grade.UNGRADED}  # column heads
_OPTIONAL = ("close", "mism", "nan", "inval", "err", "views")  # shown when any row has one
_WORDS = ("verdict", "id", "scenario", "variant")  # left-aligned; the rest are numbers
NARROWEST_LABEL = 32  # a table that leaves the variant column less than this is stacked,
LABEL_LINES = 2  # as is one in which a label would take more lines than this
_GAP = "   "  # between two columns; a table line starts with two spaces
_NOT_STARTED = (Verdict.SKIPPED, Verdict.PENDING)


def render_summary(summary: RunSummary, console: Console) -> None:
    """The variants as a table where it fits the console's width with room for their
    labels, else stacked (two lines a variant); verdict, id and label always whole. Variants
    that never started are counted on one line, not listed."""
    title = f"run {summary.run_id} ({summary.status.value}, MNN {summary.mnn_version})"
    listed = [v for v in summary.variants if not _not_started(v)]
    rows = [_cells(v) for v in listed]
    columns = [c for c in (rows[0] if rows else {}) if c not in _OPTIONAL or _any(rows, c)]
    fixed = {c: max(len(c), _widest(rows, c)) for c in columns if c != "variant"}
    console.print(title, style="italic", highlight=False, markup=False)
    room = console.width - sum(width + len(_GAP) for width in fixed.values()) - 2
    if rows and room >= _label_room_needed(rows):
        print_lines(console, _table(rows, fixed, room))
    elif rows:
        print_lines(console, _stacked(rows, fixed, console.width))
    _print_not_started([v for v in summary.variants if _not_started(v)], console)
    _print_pauses(summary.pauses, console)
    console.print(
        "exact/close/mism(atch) = outputs against the clean reference (bit-identical / within "
        "tolerance / beyond it); nan = NaN or Inf appeared; inval(id) = MNN returned an error "
        "code; err(or) = MNN raised; dist(inct) = different output digests among ok "
        "iterations of one output (1 is consistent); views = retained output views that "
        "changed / were read again (output_lifetime); deaths = worker crashes, hangs, "
        "exceptions, exits.",
        style="dim",
        markup=False,
    )
    print_references(summary.references, console)
    _print_mismatches(summary.variants, console)
    _print_rates(summary.variants, console)
    _print_repeats(summary.variants, console)
    print_signatures(summary.crash_signatures, console)
    print_signatures(summary.memcheck_signatures, console, MEMCHECK_TITLE)
    for kind, found in summary.attribution.items():
        if found.scores:  # something failed
            console.print(f"attribution ({kind}): {found.sentence}", highlight=False, markup=False)
    if summary.reason:
        console.print(
            f"run {summary.status.value}: {summary.reason}",
            style="bold",
            highlight=False,
            markup=False,
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
            markup=False,
        )


def _table(rows: list[dict[str, str]], fixed: dict[str, int], room: int) -> list[Text]:
    """A header, a rule, and a line a variant with its columns at the ``fixed`` widths; the
    label (last) is wrapped under itself where it is wider than ``room``."""
    header = Text(_line(dict(zip(fixed, fixed)), fixed, "variant"), style="bold")
    indent = " " * (header.cell_len - len("variant"))
    labels = min(room, max(len("variant"), _widest(rows, "variant")))
    lines = [header, Text(" " + "\u2500" * (len(indent) + labels - 1))]
    for row in rows:
        first, *rest = _wrapped(row["variant"], room)
        lines += [_styled(_line(row, fixed, first), row, 2), *(Text(indent + r) for r in rest)]
    return lines


def _line(row: dict[str, str], fixed: dict[str, int], label: str) -> str:
    """Two spaces, then the ``fixed`` columns padded to their widths (words to the left,
    numbers to the right), then the label."""
    cells = [
        row[c] + " " * (width - cell_len(row[c])) if c in _WORDS else row[c].rjust(width)
        for c, width in fixed.items()
    ]
    return "  " + "".join(cell + _GAP for cell in cells) + label


def _stacked(rows: list[dict[str, str]], fixed: dict[str, int], width: int) -> list[Text]:
    """Per variant: verdict, id, scenario and label (the label wrapped under itself, never
    cut), then its numbers on a line of their own under the id."""
    verdict_width, id_width = fixed["verdict"] + 2, fixed["id"] + 2
    indent, numbers = verdict_width + id_width, [c for c in fixed if c not in _WORDS]
    header = f"{'verdict':<{verdict_width}}{'id':<{id_width}}scenario variant"
    lines = [Text(header, style="bold")]
    for row in rows:
        head = f"{row['verdict']:<{verdict_width}}{row['id']:<{id_width}}"
        first, *rest = _wrapped(f"{row['scenario']} {row['variant']}", max(width - indent, 20))
        lines += [_styled(head + first, row, 0), *(Text(" " * indent + r) for r in rest)]
        present = [c for c in numbers if c not in _OPTIONAL or row[c] not in ("0", "-")]
        counts = ", ".join(_count(c, row[c]) for c in present)
        under = _wrapped(counts, max(width - verdict_width, 20))
        lines += [Text(" " * verdict_width + line, style="dim") for line in under]
    return lines


def _styled(line: str, row: dict[str, str], verdict_at: int) -> Text:
    """``line`` with the row's verdict (at ``verdict_at``) in the verdict's style."""
    text = Text(line)
    text.stylize(Verdict(row["verdict"]).style, verdict_at, verdict_at + len(row["verdict"]))
    return text


def _wrapped(words: str, width: int) -> list[str]:
    """``words`` in lines of at most ``width`` cells, broken at spaces (a word longer than a
    line is folded)."""
    if cell_len(words) <= width:
        return [words]
    lines = Text(words).wrap(_MEASURING, width, overflow="fold")
    return [line.plain.rstrip() for line in lines]


_MEASURING = Console(width=1000)  # Text.wrap asks a console only for tab size and emoji


def _count(column: str, cell: str) -> str:
    if column == "p50ms":
        return "p50 -" if cell == "-" else f"p50 {cell} ms"
    return f"{column} {cell}"


def _label_room_needed(rows: list[dict[str, str]]) -> int:
    widest = _widest(rows, "variant")
    return min(widest, max(NARROWEST_LABEL, -(-widest // LABEL_LINES)))


def _widest(rows: list[dict[str, str]], column: str) -> int:
    return max((cell_len(row[column]) for row in rows), default=0)


def _not_started(variant: VariantSummary) -> bool:
    return variant.verdict in _NOT_STARTED and variant.iterations == 0


def _print_not_started(variants: list[VariantSummary], console: Console) -> None:
    """How many variants never started, by scenario (``run --resume`` starts them)."""
    if variants:
        by_scenario = Counter(v.scenario for v in variants)
        where = ", ".join(f"{name} {count:,}" for name, count in by_scenario.items())
        words = sorted({str(v.verdict) for v in variants})
        console.print(
            f"{len(variants):,} variant(s) not started ({'/'.join(words)}), not listed: {where}",
            style="yellow",
            highlight=False,
            markup=False,
        )


def print_lines(console: Console, lines: list[Text]) -> None:
    """Print ``lines`` with no spaces at their ends when the console is no terminal (a file
    or a pipe gets no padding to the console's width)."""
    if console.is_terminal:
        console.print(Group(*lines))
    elif console.color_system is None:
        console.out("\n".join(line.plain.rstrip() for line in lines), highlight=False)
    else:
        with console.capture() as captured:
            console.print(Group(*lines))
        plain = (line.rstrip() for line in captured.get().splitlines())
        console.out("\n".join(plain), highlight=False)


def _any(rows: list[dict[str, str]], column: str) -> bool:
    return any(row[column] not in ("0", "-") for row in rows)


def _graded(variant: VariantSummary, grade: str, count: int) -> str:
    return f"{count:,}" if count or variant.iterations else "-"


def print_references(references: dict[str, ScenarioReference], console: Console) -> None:
    """Which scenarios were graded against what, any reference that is doubtful, and how
    MNN's clean reference compares with ONNX Runtime's where the model came from ONNX."""
    for name, reference in references.items():
        if reference.problem:
            console.print(f"reference of {name}: {reference.problem}", style="yellow", markup=False)
        independent = reference.onnxruntime
        if independent.status and independent.status != "done":
            console.print(
                f"ONNX Runtime reference of {name}: {independent.status}", style="dim", markup=False
            )
        for output, found in independent.outputs.items():
            console.print(
                f"{name}: MNN's clean output {output} against ONNX Runtime: {_agreement(found)}",
                style="red" if found.grade not in ("exact", "close") else None,
                highlight=False,
                markup=False,
            )
    tolerances = sorted({r.tolerance for r in references.values()})
    console.print(f"tolerance: {'; '.join(tolerances)}", style="dim", highlight=False, markup=False)


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
            markup=False,
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
            console.print(
                f"{v.variant_id} {v.label}: " + "; ".join(parts), highlight=False, markup=False
            )
    clean = [v for v in variants if v.clean_bound is not None]
    if clean:
        shortest = min(clean, key=lambda v: v.iterations)
        console.print(
            f"{len(clean)} variant(s) with nothing wrong; the shortest ({shortest.variant_id}) "
            f"failed {describe(0, shortest.iterations)} iterations: a rarer failure could have "
            "gone unseen.",
            style="dim",
            highlight=False,
            markup=False,
        )


MEMCHECK_TITLE = "memcheck errors (valgrind):"


def print_signatures(
    signatures: list[Signature], console: Console, title: str = "crash signatures:"
) -> None:
    """Worker deaths (or memcheck errors) grouped by cause: kind, signal, exception or error,
    innermost frames."""
    if not signatures:
        return
    console.print(title, style="bold", markup=False)
    for group in signatures:
        under = varied(group)
        console.print(
            f"  {group.count:>5} {group.kind.value} {group.cause} at {where(group)}; "
            f"{len(group.variants)} variant(s), first {group.first}, last {group.last}"
            + (f"; under {under}" if under else ""),
            highlight=False,
            markup=False,
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
            markup=False,
        )
