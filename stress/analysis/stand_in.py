"""What stands in for a manifest that cannot be read: what the rows and events say.

The rows carry the run id, each variant's scenario and factor values, when they ran and the
MNN version that ran; the variants' states, budgets, the scenarios' tolerances and texts, the
host and the run's status are in the manifest only, and are reported as unknown.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from stress.analysis.scan import Scan
from stress.factors import changed, shown
from stress.records.manifest import ManifestData, VariantEntry
from stress.records.schema import FACTOR_FIELDS
from stress.records.states import RunStatus, VariantStatus
from stress.scenario.variants import label

UNKNOWN_WHAT = (
    "the run's status, each variant's state and budget, the scenarios' tolerances (the "
    "default is used) and the host are unknown; variants and counts come from the rows"
)
_FACTORS = [f.name for f in FACTOR_FIELDS]


def manifest_from_rows(scan: Scan, events: pa.Table) -> ManifestData:
    """A stand-in manifest: status and variant states ``unknown``, and the reason why."""
    variants = _variants(scan, events)
    first = scan.table(
        "SELECT any_value(run_id) AS run_id, epoch_ms(min(ts)) AS first_ms, "
        "any_value(mnn_version) AS mnn FROM fetched"
    ).to_pylist()[0]
    run_id = first["run_id"] or _any(events, "run_id") or "unknown"
    started = "unknown"
    if first["first_ms"] is not None:
        moment = datetime.fromtimestamp(first["first_ms"] / 1000, timezone.utc)
        started = moment.isoformat(timespec="milliseconds")
    return ManifestData(
        run_id=run_id,
        command=[],
        cwd="",
        started=started,
        ended=None,
        status=RunStatus.UNKNOWN,
        reason="manifest.json cannot be read",
        concurrency=0,
        budget={},
        test_fault=None,
        owner={},
        host={},
        versions={"MNN": first["mnn"] or _any(events, "mnn_version")},
        scenarios=[{"name": name} for name in sorted({v.scenario for v in variants.values()})],
        variants=variants,
    )


def _variants(scan: Scan, events: pa.Table) -> dict[str, VariantEntry]:
    """One entry per variant with a row or an event, its factor values from the first."""
    factors = ", ".join(f'any_value("{name}") AS "{name}"' for name in _FACTORS)
    rows = scan.table(
        f"SELECT variant_id, any_value(scenario) AS scenario, {factors} FROM run_rows "
        "GROUP BY variant_id ORDER BY variant_id"
    ).to_pylist()
    seen = {row["variant_id"] for row in rows}
    columns = ["variant_id", "scenario", *_FACTORS]
    rows += [e for e in events.select(columns).to_pylist() if e["variant_id"] not in seen]
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row["variant_id"], (row["scenario"], {n: row[n] for n in _FACTORS}))
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for scenario, params in found.values():
        by_scenario.setdefault(scenario, []).append(params)
    varied = {scenario: _varied(params) for scenario, params in by_scenario.items()}
    return {
        vid: _entry(scenario, params, label(params, varied[scenario]))
        for vid, (scenario, params) in found.items()
    }


def _varied(params: list[dict[str, Any]]) -> list[str]:
    """The factors whose values differ among a scenario's variants: its matrix, as far as
    the rows tell (the same rule as ``variants.expand``, so a variant keeps its label). A
    value at its default counts as the default: ``input_path`` follows ``api`` by itself."""
    marks = [{n: shown(v) for n, v in changed(p).items()} for p in params]  # off default
    return [n for n in _FACTORS if len({mark.get(n, "default") for mark in marks}) > 1]


def _entry(scenario: str, params: dict[str, Any], label: str) -> VariantEntry:
    return VariantEntry(
        scenario=scenario,
        label=label,
        params=params,
        status=VariantStatus.UNKNOWN,
        completed=0,
        crashes=0,
        next_iterations=[],
        stop_iteration=None,
        duration_s=None,
        workers_started=0,
    )


def _any(table: pa.Table, column: str) -> Any:
    values = [v for v in table[column].to_pylist() if v is not None] if table.num_rows else []
    return values[0] if values else None
