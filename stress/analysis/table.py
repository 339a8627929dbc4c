"""Terminal rendering of a run summary (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from stress.analysis.rates import describe
from stress.analysis.summary import DEATH_KINDS
from stress.factors import REGISTRY

_STYLE = {
    "ok": "green",
    "INCONSISTENT": "yellow",
    "FAILED": "red",
    "VIEW_CHANGED": "yellow",
    "REFUSED": "cyan",
    "CRASHED": "red",
    "QUARANTINED": "bold red",
    "HARNESS_ERROR": "bold magenta",
}


def render_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"run {summary['run_id']} ({summary['status']}, MNN {summary['mnn_version']})",
        title_justify="left",
    )
    for column in (
        "scenario",
        "variant",
        "id",
        "iters",
        "ok",
        "invalid",
        "error",
        "distinct",
        "non-finite",
        "views",
        "deaths",
        "p50 ms",
        "verdict",
    ):
        numeric = column not in ("scenario", "variant", "id", "verdict")
        table.add_column(column, justify="right" if numeric else "left")
    for v in summary["variants"]:
        deaths = ", ".join(f"{v['events'][k]} {k}" for k in DEATH_KINDS if v["events"][k])
        word = v["verdict"]
        latency = v["latency_p50_ms"]
        table.add_row(
            v["scenario"],
            v["label"],
            v["variant_id"],
            str(v["iterations"]),
            str(v["ok"]),
            str(v["invalid"]),
            str(v["error"]),
            str(v["distinct_outputs"]),
            str(v["non_finite"]),
            f"{v['views_changed']}/{v['views_rechecked']}" if v["views_rechecked"] else "-",
            deaths or "0",
            "-" if latency is None else f"{latency:.3f}",
            f"[{_STYLE.get(word, 'yellow')}]{word}[/]",
        )
    console.print(table)
    console.print(
        "distinct = different output digests among ok iterations of one output "
        "(1 is consistent); views = retained output views that changed / were read again "
        "(output_lifetime); deaths = worker crashes/hangs/exceptions/exits.",
        style="dim",
    )
    _print_rates(summary["variants"], console)
    _print_repeats(summary["variants"], console)
    _print_signatures(summary["crash_signatures"], console)
    if summary["reason"]:
        console.print(
            f"run {summary['status']}: {summary['reason']}", style="bold", highlight=False
        )


def _print_rates(variants: list[dict[str, Any]], console: Console) -> None:
    """How often each variant failed, with 95 % intervals; what the clean ones rule out."""
    for v in variants:
        parts = [
            f"{name} {describe(r['count'], r['n'])}"
            for name, r in v["rates"].items()
            if r["count"] and r["n"]
        ]
        if parts:
            console.print(f"{v['variant_id']} {v['label']}: " + "; ".join(parts), highlight=False)
    clean = [v for v in variants if v["clean_bound"] is not None]
    if clean:
        shortest = min(clean, key=lambda v: v["iterations"])
        console.print(
            f"{len(clean)} variant(s) with nothing wrong; the shortest ({shortest['variant_id']}) "
            f"ran {describe(0, shortest['iterations'])}: a rarer failure could have gone unseen.",
            style="dim",
            highlight=False,
        )


def _print_signatures(signatures: list[dict[str, Any]], console: Console) -> None:
    """Worker deaths grouped by cause: kind, signal or exception, innermost Python frames."""
    if not signatures:
        return
    console.print("crash signatures:", style="bold")
    for group in signatures:
        where = " < ".join(group["frames"]) or "no Python stack"
        varied = {
            name: values
            for name, values in group["factors"].items()
            if values != [REGISTRY[name].default]
        }
        under = " ".join(f"{k}={'|'.join(map(str, v))}" for k, v in varied.items())
        console.print(
            f"  {group['count']:>5} {group['kind']} {group['cause']} at {where}; "
            f"{len(group['variants'])} variant(s), first {group['first']}, last {group['last']}"
            + (f"; under {under}" if under else ""),
            highlight=False,
        )


def _print_repeats(variants: list[dict[str, Any]], console: Console) -> None:
    """Where repeats in one process and repeats across fresh processes disagree."""
    for v in variants:
        within, across = v["distinct_within_worker"], v["distinct_first_per_worker"]
        if within == across or max(within, across) < 2:
            continue
        console.print(
            f"{v['variant_id']} {v['label']}: at most {within} distinct output(s) within one "
            f"worker, {across} among the first outputs of its {v['workers']} fresh workers",
            highlight=False,
        )
