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
from stress.manifest import ManifestData, VariantEntry
from stress.records import FACTOR_FIELDS
from stress.states import RunStatus, VariantStatus

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
    entries: dict[str, VariantEntry] = {}
    for row in rows:
        if row["variant_id"] in entries:
            continue
        params = {name: row[name] for name in _FACTORS}
        entries[row["variant_id"]] = _entry(row["scenario"], params)
    return entries


def _entry(scenario: str, params: dict[str, Any]) -> VariantEntry:
    # the rows' mnn_version is the one that ran, not one the scenario asked for
    varied = {k: v for k, v in changed(params).items() if k != "mnn_version"}
    label = " ".join(f"{k}={shown(v)}" for k, v in varied.items())
    return VariantEntry(
        scenario=scenario,
        label=label or f"api={shown(params['api'])}",
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
