"""Terminal rendering of a run summary (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from stress.analysis.summary import DEATH_KINDS

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
    if summary["reason"]:
        console.print(
            f"run {summary['status']}: {summary['reason']}", style="bold", highlight=False
        )
