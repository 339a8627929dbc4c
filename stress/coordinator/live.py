"""The live grades of a run: each part's rows, as the recorder writes them, graded against the
scenarios' clean references (``analysis.live_grades``) and counted on their variants' states
for the live view. A bug here stops the live grades, never the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from stress.analysis.live_grades import LiveGrader
from stress.analysis.references import load_references
from stress.coordinator.plan import VariantState


def grading_rows(
    run_dir: Path,
    scenarios: list[dict[str, Any]],
    states: list[VariantState],
    note: Callable[[str], None],
) -> Callable[[pa.Table], None]:
    """A ``Hooks.on_rows`` that adds each part's grades to its variants' states.
    ``scenarios`` as the manifest holds them (name, tolerance)."""
    by_id = {state.variant.variant_id: state for state in states}
    try:
        names = [s["name"] for s in scenarios]
        tolerances = {s["name"]: s.get("tolerance", {}) for s in scenarios}
        grader: LiveGrader | None = LiveGrader(load_references(run_dir, names), tolerances)
    except Exception as exc:  # noqa: BLE001 - the summary grades at the end all the same
        note(_stopped("no live grades", exc))
        return lambda rows: None

    def on_rows(rows: pa.Table) -> None:
        nonlocal grader
        if grader is None:
            return
        try:
            counted = grader.count(rows)
        except Exception as exc:  # noqa: BLE001
            grader = None
            note(_stopped("live grades stopped", exc))
            return
        for variant_id, grades in counted.items():
            if variant_id in by_id:
                by_id[variant_id].grades.update(grades)

    return on_rows


def _stopped(what: str, exc: Exception) -> str:
    return (
        f"{what}: a bug of mnn-stress ({type(exc).__name__}: {exc}); the summary grades every "
        "row at the end all the same"
    )
