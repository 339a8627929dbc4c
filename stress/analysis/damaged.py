"""What a reader could not read, said with every summary: damaged part files (skipped where
they lie, or set aside into ``damaged/``), the variants whose rows or death events fall short
of what the run counted, and a manifest or journal that cannot be read. None of it is a
finding about MNN: it never changes an exit status by itself."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from stress.analysis.dataset import damaged_parts
from stress.analysis.summary_model import Damage, Shortfall, VariantSummary
from stress.records.damage import DamagedPart
from stress.records.manifest import ManifestData
from stress.records.states import VariantStatus

PREFIX = "warning: "
VARIANTS_SHOWN = 10  # variants short of rows (or of deaths) named in the text; all in --json


def damage(
    run_dir: Path,
    manifest: ManifestData,
    variants: dict[str, VariantSummary],
    unreadable: list[str],
) -> Damage:
    """The summary's ``damage`` section. Call it after every read of the run (a part found
    damaged part-way through a read is known from then on)."""
    parts = damaged_parts(run_dir)
    rows_missing, deaths_missing = [], []
    for vid, v in variants.items():
        if manifest.variants[vid].status is VariantStatus.UNKNOWN:
            continue  # what the run counted is unknown
        if parts and v.completed is not None and v.completed > v.iterations:
            rows_missing.append(_shortfall(v, v.completed, v.iterations))
        if v.deaths_counted > v.events.deaths:  # a damaged part, or a killed coordinator
            deaths_missing.append(_shortfall(v, v.deaths_counted, v.events.deaths))
    return Damage(
        parts=[part.to_dict() for part in parts],
        rows_missing=rows_missing,
        deaths_missing=deaths_missing,
        unreadable=unreadable,
    )


def _shortfall(v: VariantSummary, counted: int, read: int) -> Shortfall:
    return Shortfall(
        variant_id=v.variant_id, scenario=v.scenario, label=v.label, counted=counted, read=read
    )


def warnings(section: Damage) -> list[str]:
    """The section in sentences, as every renderer shows them (without ``PREFIX``)."""
    lines = list(section.unreadable)
    for part in section.parts:
        how = "set aside" if part.set_aside else "skipped"
        described = DamagedPart.from_dict(part.model_dump()).describe()
        lines.append(f"damaged part file {how}: {described}")
    if section.parts:
        lines.append(
            "a damaged part is what a machine crash can leave (parts are not fsynced); its rows "
            "are not in the counts above, and it is not a finding about MNN"
        )
    lines += _short(section.rows_missing, "rows", "iterations have rows")
    lines += _short(section.deaths_missing, "death events", "worker deaths have an event")
    return lines


def _short(variants: list[Shortfall], what: str, have: str) -> list[str]:
    lines = [
        f"{what} missing in {v.variant_id} {v.scenario} {v.label}: "
        f"{v.read:,} of {v.counted:,} {have}"
        for v in variants[:VARIANTS_SHOWN]
    ]
    if len(variants) > VARIANTS_SHOWN:
        lines.append(f"{what} missing in {len(variants) - VARIANTS_SHOWN} more variant(s) (--json)")
    return lines


def print_warnings(lines: list[str], console: Console, prefix: str = "") -> None:
    """Each warning on its own line, in yellow, as written (no markup)."""
    for line in lines:
        console.print(f"{prefix}{PREFIX}{line}", style="yellow", markup=False, highlight=False)
