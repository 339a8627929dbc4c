"""The run report as one self-contained HTML file (``mnn-stress report RUN_DIR --html``): inline
CSS and inline SVG plots, nothing fetched. Every value from the run is escaped: scenario
texts, labels, messages and stack frames may be hostile."""

from __future__ import annotations

import html
import math
from collections import Counter
from collections.abc import Collection, Iterable
from pathlib import Path

from stress.analysis import plots
from stress.analysis.counts import death_words
from stress.analysis.signatures import varied, where
from stress.analysis.summary_model import (
    AttributionFinding,
    Drift,
    GradeCounts,
    RunSummary,
    ScenarioReference,
    Signature,
    VariantSummary,
)
from stress.analysis.verdicts import Verdict
from stress.records.manifest import read_records

SERIES_SHOWN = 8  # variants whose latency and RSS over time are plotted

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
h3{font-size:15px;margin:16px 0 6px}table{border-collapse:collapse;font-size:12px}
th,td{padding:2px 6px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.zero{color:#bbb}.dim{color:#777}.mono{font-family:ui-monospace,monospace;font-size:11px}
.v{font-weight:600;padding:0 4px;border-radius:3px}.v.ok{padding:0}.bad{background:#fdd;color:#a00}
.warn{background:#ffefc2;color:#7a5a00}.info{background:#dff2f7;color:#06607a}
.harness{background:#f3d9f7;color:#7a007a}.ok{color:#17702a}.other{background:#eee}
.nowrap{white-space:nowrap}.problem{background:#fff3cd}.verdicts{font-size:16px;margin:6px 0}
svg{max-width:100%;height:auto}
"""


class Html(str):
    """Markup made here: inserted as is, where any other value is escaped."""


def _text(value: object) -> str:
    return value if isinstance(value, Html) else html.escape("" if value is None else str(value))


def _tag(name: str, body: object, cls: str = "") -> Html:
    attribute = f' class="{cls}"' if cls else ""
    return Html(f"<{name}{attribute}>{_text(body)}</{name}>")


def _table(head: Iterable[str], rows: Iterable[Iterable[object]], numeric: Collection[int] = ()):
    """A table; cells that are Html go in as is, the rest escaped; ``numeric`` columns right."""
    header = "".join(f"<th>{_text(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(_cell(cell, i in numeric) for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return Html(f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>")


def _cell(value: object, numeric: bool) -> str:
    return f"<td class=n>{_text(value)}</td>" if numeric else f"<td>{_text(value)}</td>"


def write_html(summary: RunSummary, run_dir: Path, path: Path) -> None:
    """The report of ``summary`` (``summarize(run_dir)``) into ``path``, one file."""
    variants = sorted(summary.variants, key=_problems_first)
    sections = [
        _header(summary),
        _warning_section(summary.warnings),
        _variant_section(variants),
        _plot_section(variants, run_dir),
        _attribution_section(summary.attribution),
        _signature_section(summary.crash_signatures),
        _signature_section(summary.memcheck_signatures, "Memcheck errors", ""),
        _reference_section(summary.references, run_dir),
    ]
    title = _text(f"mnn-stress {summary.run_id}")
    page = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>"
    )
    path.write_text(page, encoding="utf-8")


def _problems_first(variant: VariantSummary) -> tuple:
    """Sort key: the worst verdict first, then the highest failure rate."""
    worst = plots.failing_rates(variant)
    rate = worst[0][1].rate if worst else 0.0
    return variant.verdict.severity, -rate, variant.scenario, variant.label


def _rank(verdict: str) -> int:
    return Verdict(verdict).severity


def _verdict(word: str) -> Html:
    return _tag("span", word, f"v {Verdict(word).html_class}")


def _header(summary: RunSummary) -> Html:
    """Run id, status and why, MNN version, times, and the verdicts counted in one line."""
    counts = Counter(v.verdict for v in summary.variants)
    order = sorted(counts, key=lambda word: (word != "ok", _rank(word)))
    line = ", ".join(f"{counts[w]} {_verdict(w)}" for w in order) or "no variants"
    status = summary.status.value + (f": {summary.reason}" if summary.reason else "")
    facts = [
        ("status", status),
        ("MNN", summary.mnn_version),
        ("started", when(summary.started)),
        ("ended", when(summary.ended) if summary.ended else "not ended"),
    ]
    items = " &middot; ".join(f"{_text(k)} <b>{_text(v)}</b>" for k, v in facts)
    return Html(
        f"<h1>mnn-stress run {_text(summary.run_id)}</h1><div>{items}</div>"
        f'<div class="verdicts">{line}</div>'
    )


def _variant_section(variants: list[VariantSummary]) -> Html:
    """Variants with a problem first; the ok ones folded away. Grade columns that are zero
    for every variant are left out (the table must fit a screen)."""
    seen = {g for v in variants for g, n in v.grades.items() if n}
    grades = [g for g in GradeCounts.model_fields if g == "exact" or g in seen]
    head = ["verdict", "scenario", "variant", "id", "iterations", "distinct", *grades]
    head += ["worst failure (95 % CI)", "deaths", "p50 ms", "p99 ms", "RSS/1k it.", "flags"]
    numeric = {4, 5, *range(6, 6 + len(grades)), *range(7 + len(grades), 11 + len(grades))}
    problems = [_variant_row(v, grades) for v in variants if v.verdict is not Verdict.OK]
    fine = [_variant_row(v, grades) for v in variants if v.verdict is Verdict.OK]
    parts = [_tag("h2", "Variants")]
    parts.append(_table(head, problems, numeric) if problems else _tag("p", "No problems."))
    if fine:
        parts.append(
            Html(f"<details><summary>{len(fine)} ok variant(s)</summary>")
            + _table(head, fine, numeric)
            + Html("</details>")
        )
    return Html("".join(parts))


def _variant_row(v: VariantSummary, grades: list[str]) -> list[object]:
    by_grade = dict(v.grades.items())
    deaths = death_words(v)
    return [
        _verdict(v.verdict),
        v.scenario,
        v.label,
        _tag("span", v.variant_id, "mono"),
        v.iterations,
        v.distinct_outputs,
        *(_count(by_grade[g]) for g in grades),
        _worst_rate(v),
        _tag("span", deaths, "nowrap") if deaths else _count(0),
        _number(v.latency_p50_ms),
        _number(v.latency_p99_ms),
        _slope(v.drift),
        ", ".join(v.drift.flags if v.drift else []),
    ]


def _slope(drift: Drift | None) -> object:
    """The RSS slope; one that earned no flag is noise or warm-up: shown, but dimmed."""
    if drift is None:
        return "-"
    dimmed = "bad" if "rss_growth" in drift.flags else "dim"
    return _tag("span", human_bytes(drift.rss_bytes_per_1k_iterations), dimmed + " nowrap")


def _count(value: int) -> object:
    return _tag("span", 0, "zero") if value == 0 else f"{value:,}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def percent(value: float) -> str:
    """'0.11 %', '96 %'."""
    scaled = 100 * value
    return f"{scaled:.2g} %" if abs(scaled) < 10 else f"{scaled:.0f} %"


def _worst_rate(v: VariantSummary) -> object:
    worst = plots.failing_rates(v)
    if worst:
        outcome, r = worst[0]
        interval = f"{percent(r.low).removesuffix(' %')}–{percent(r.high)}"
        return _tag("span", f"{outcome} {percent(r.rate)} ({interval})", "nowrap")
    if v.views_changed:
        return f"views changed: {v.views_changed} of {v.views_rechecked}"
    if v.clean_bound:
        return _tag("span", f"< {percent(v.clean_bound)}", "dim")
    return ""


def when(iso: str) -> str:
    """'2026-11-25T00:46:02.260+00:00' as '2026-11-25 00:46:02 UTC'."""
    return iso[:19].replace("T", " ") + (" UTC" if iso.endswith("+00:00") else iso[19:])


def human_bytes(value: float) -> str:
    """Signed bytes in binary units: '512 B', '-28.0 KiB', '1.5 MiB'."""
    size, unit = abs(value), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            break
        size /= 1024
    sign = "-" if value < 0 else ""
    return f"{sign}{size:.0f} {unit}" if unit == "B" else f"{sign}{size:.1f} {unit}"


def _plot_section(variants: list[VariantSummary], run_dir: Path) -> Html:
    series = _series_variants(variants)
    picked = (
        f"{len(series)} variant(s): drift flags and failures first, then the slowest; "
        f"each worker thinned to at most {plots.POINTS_PER_WORKER:,} points. The time axis is "
        "the variant's own running time, from its first iteration; the time between its "
        "workers (a replacement starting, a second pass later in the run) is left out."
        if series
        else ""
    )
    figures = [
        ("Failure rates", plots.failure_rates(variants), "No variant failed.", ""),
        ("Latency and RSS over time", plots.time_series(run_dir, series), "No iterations.", picked),
        (
            "Differences from the reference",
            plots.differences(variants),
            "No close or mismatching output with a known difference.",
            _differences_note(variants),
        ),
        ("Worker deaths over time", plots.crash_timeline(run_dir, variants), "No deaths.", ""),
    ]
    parts = [_tag("h2", "Plots")]
    for title, svg, nothing, note in figures:
        parts += [_tag("h3", title), Html(svg) if svg else _tag("p", nothing, "dim")]
        parts += [_tag("p", note, "dim")] if note else []
    return Html("".join(parts))


def _series_variants(variants: list[VariantSummary]) -> list[VariantSummary]:
    """Whose latency and RSS to plot: drift flags first, then failures, then the slowest."""
    ran = [v for v in variants if v.iterations]
    return sorted(
        ran,
        key=lambda v: (
            not (v.drift and v.drift.flags),
            not plots.failing_rates(v),
            -(v.latency_p50_ms or 0),
        ),
    )[:SERIES_SHOWN]


def _differences_note(variants: list[VariantSummary]) -> str:
    """What the differences plot cannot show exactly: differences that are lower bounds (graded
    by min/max/mean, values not stored), and those of no known size (not drawn)."""
    inexact = [o for v in variants for o in v.inexact_outputs if o.grade in ("close", "mismatch")]
    drawn = [o for o in inexact if o.max_abs and math.isfinite(o.max_abs)]
    bounds = sum(1 for o in drawn if o.basis == "statistics")
    unknown = len(inexact) - len(drawn)
    notes = []
    if bounds:
        notes.append(
            f"{bounds} inexact output(s) graded by min/max/mean only (values not stored): the "
            "max |difference| drawn (▶) is a lower bound, the real one is at least as large."
        )
    if unknown:
        notes.append(f"{unknown} inexact output(s) not drawn: their difference has no known size.")
    return " ".join(notes)


def _attribution_section(attribution: dict[str, AttributionFinding]) -> Html:
    parts = [_tag("h2", "Attribution")]
    if not attribution:
        return Html(parts[0] + _tag("p", "Nothing failed.", "dim"))
    head = ["predicate", "with", "without", "increase (95 % bounds)", "importance"]
    for kind, found in attribution.items():
        rows = [
            [
                s.predicate,
                f"{s.with_} ({percent(s.rate_with)})",
                f"{s.without} ({percent(s.rate_without)})",
                f"{percent(s.increase)} ({percent(s.increase_low)} to {percent(s.increase_high)})",
                f"{s.importance:.3f}",
            ]
            for s in found.scores
        ]
        parts += [_tag("h3", kind), _tag("p", found.sentence)]
        parts.append(_table(head, rows, {3, 4}) if rows else _tag("p", "no scores", "dim"))
    return Html("".join(parts))


def _signature_section(
    signatures: list[Signature],
    title: str = "Crash signatures",
    nothing: str = "No worker died.",
) -> Html:
    """Signatures as a table; with none, ``nothing`` (or no section at all when empty)."""
    parts = [_tag("h2", title)]
    if not signatures:
        return Html(parts[0] + _tag("p", nothing, "dim") if nothing else "")
    head = ["count", "kind", "cause", "innermost frames", "variants", "first", "last", "under"]
    rows = [
        [
            g.count,
            g.kind.value,
            g.cause,
            _tag("span", where(g), "mono"),
            _tag("span", " ".join(g.variants), "mono"),
            _tag("span", when(g.first), "nowrap"),
            _tag("span", when(g.last), "nowrap"),
            varied(g),
        ]
        for g in signatures
    ]
    return Html(parts[0] + _table(head, rows, {0}))


def _warning_section(warnings: list[str]) -> Html:
    """What could not be read (damaged parts, manifest, journal), above everything else."""
    if not warnings:
        return Html("")
    items = "".join(_tag("li", line) for line in warnings)
    return Html(_tag("h2", "What could not be read") + f'<ul class="problem">{items}</ul>')


def _reference_section(references: dict[str, ScenarioReference], run_dir: Path) -> Html:
    manifest, _ = read_records(run_dir)  # without it (damaged): the models are unknown
    scenarios = manifest.scenarios if manifest is not None else []
    models = {s["name"]: s.get("model", {}).get("ref") for s in scenarios}
    head = ["scenario", "model", "outputs", "tolerance", "problem"]
    rows = [
        [
            name,
            models.get(name),
            ", ".join(r.outputs),
            r.tolerance,
            _tag("span", r.problem, "problem") if r.problem else "",
        ]
        for name, r in references.items()
    ]
    body = _table(head, rows) if rows else _tag("p", "No references.", "dim")
    return Html(_tag("h2", "References and tolerance") + body)
