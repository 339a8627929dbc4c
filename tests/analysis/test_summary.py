"""The verdict: one word per variant, findings first, never ``ok`` for rows that are missing."""

from __future__ import annotations

import pytest

from stress.analysis.summary import _empty, verdict
from stress.records.manifest import VariantEntry


def variant(status: str = "done", iterations: int = 10, **counts) -> dict:
    row = _empty("v1", "s", "label", status)
    row.update(iterations=iterations, ok=iterations, completed=iterations, distinct_outputs=1)
    events = counts.pop("events", {})
    row.update(counts)
    row["events"].update(events)
    return row


@pytest.mark.parametrize(
    "row, word",
    [
        (variant(), "ok"),
        (variant(distinct_outputs=2), "INCONSISTENT"),
        (variant(non_finite=1, distinct_outputs=2), "FAILED"),
        (variant(invalid=1), "FAILED"),
        (variant(error=1), "FAILED"),
        (variant(views_changed=1, views_rechecked=4), "VIEW_CHANGED"),
        (variant(views_changed=1, distinct_outputs=2), "VIEW_CHANGED"),
        (variant(views_changed=1, error=1), "FAILED"),
        (variant(views_changed=0, views_rechecked=4), "ok"),
        (variant(events={"crash": 1}, invalid=1), "CRASHED"),
        (variant(events={"hang": 1}), "CRASHED"),
        (variant(events={"interrupted": 1, "resize": 1}), "ok"),  # neither is a finding
        (variant("quarantined", events={"crash": 4}), "QUARANTINED"),
        (variant("refused", iterations=0, completed=0, events={"exception": 1}), "REFUSED"),
        (variant("refused", iterations=0, completed=0, events={"crash": 1}), "REFUSED"),
        (variant("failed", events={"harness": 1, "crash": 1}), "HARNESS_ERROR"),
        (variant(events={"harness": 1}), "HARNESS_ERROR"),  # even if the variant went on
        (variant(completed=12), "INCOMPLETE"),  # 2 iterations never reached the disk
        (variant(iterations=0, completed=0), "EMPTY"),
        (variant("killed"), "KILLED"),
        (variant("interrupted"), "INTERRUPTED"),
        (variant("skipped", iterations=0, completed=0), "SKIPPED"),
        (variant("running"), "RUNNING"),
    ],
)
def test_verdict(row, word):
    assert verdict(row) == word


def test_a_manifest_entry_from_before_threads_still_reads():
    """Runs made before the threads factor wrote one next_iteration: thread 0's."""
    old = {
        "scenario": "s",
        "label": "api=session",
        "params": {"api": "session"},
        "status": "done",
        "completed": 5,
        "crashes": 0,
        "next_iteration": 5,
        "stop_iteration": 5,
        "duration_s": None,
        "workers_started": 1,
    }
    assert VariantEntry.from_dict(old).next_iterations == [5]
    with pytest.raises(TypeError):
        VariantEntry.from_dict({**old, "next_iterations": [5], "bogus": 1})


def later_looks(fetch_digest, later_digest) -> dict:
    """The summary's later-look counts for one fetch row and one later read of it."""
    import pyarrow as pa

    from stress.analysis.counts import add_counts
    from stress.analysis.scan import Scan

    rows = pa.table(
        {
            "variant_id": ["v1", "v1"],
            "thread": pa.array([0, 0], pa.int16()),
            "iteration": pa.array([3, 3], pa.int64()),
            "status": ["ok", "ok"],
            "output_name": ["y", "y"],
            "observation": ["fetch", "retained"],
            "digest": pa.array([fetch_digest, later_digest], pa.string()),
        }
    )
    row = _empty("v1", "s", "label", "done")
    with Scan(rows) as scan:
        add_counts({"v1": row}, scan)
    return {"rechecked": row["views_rechecked"], "changed": row["views_changed"]}


@pytest.mark.parametrize(
    ("fetch_digest", "later_digest", "counts"),
    [
        ("aa", "aa", {"rechecked": 1, "changed": 0}),
        ("aa", "bb", {"rechecked": 1, "changed": 1}),
        ("aa", None, {"rechecked": 1, "changed": 1}),  # nothing readable any more: changed
        (None, "aa", {"rechecked": 0, "changed": 0}),  # nothing was recorded to compare with
    ],
)
def test_later_reads_are_compared_with_the_fetch_digest(fetch_digest, later_digest, counts):
    assert later_looks(fetch_digest, later_digest) == counts


@pytest.mark.integration
def test_a_summary_of_a_running_run_whose_parts_change_meanwhile_is_of_one_snapshot(
    tmp_path, monkeypatch
):
    """A running run compacts its parts and writes new ones while ``summary`` reads: counts
    from before and grades from after said "no interval for 64477 of 56310" (exit 70), or
    silently disagreed. The summary is made again from the parts as they now are."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    import stress.analysis.summary as summary
    from tests.conftest import run_cli

    (tmp_path / "s.yaml").write_text("name: s\nmodel: tiny\niterations: 400\n")
    out = tmp_path / "run"
    run_cli("run", str(tmp_path / "s.yaml"), "--out", str(out))
    folder = out / "iterations"
    (whole,) = folder.glob("part-*.parquet")
    rows = pq.read_table(whole)
    whole.unlink()
    halves = [folder / "part-000000-000000.parquet", folder / "part-000001-000001.parquet"]
    pq.write_table(rows.slice(0, 200), halves[0])
    pq.write_table(rows.slice(200), halves[1])
    counted = summary.add_counts

    def compacted_meanwhile(per_variant, scan):  # once: a merge, and 100 more rows, land
        counted(per_variant, scan)
        monkeypatch.setattr(summary, "add_counts", counted)
        pq.write_table(rows, folder / "part-000000-000001.parquet")
        more = rows.slice(0, 100)
        later = pc.add(more["iteration"], 1000)
        more = more.set_column(more.schema.get_field_index("iteration"), "iteration", later)
        pq.write_table(more, folder / "part-000002-000002.parquet")
        for half in halves:
            half.unlink()

    monkeypatch.setattr(summary, "add_counts", compacted_meanwhile)
    (variant,) = summary.summarize(out).variants
    assert variant.iterations == 500 and sum(variant.grades.model_dump().values()) == 500
