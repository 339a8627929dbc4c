"""The typed sections of manifest.json: written as they always were, read back strictly."""

from __future__ import annotations

import json

import pytest

from stress.errors import RunDirError
from stress.records.manifest import ManifestData, load_manifest
from stress.records.manifest_sections import (
    AdaptiveSection,
    DiskSection,
    ReferenceEntry,
    Segment,
)
from stress.records.states import RunStatus
from tests.conftest import run_cli

SEGMENT = {
    "started": "2026-12-07T10:00:00.000+00:00",
    "ended": None,
    "status": "running",
    "reason": None,
    "owner": {"pid": 1, "start_time": 2.0, "boot_id": None, "hostname": "h"},
    "command": ["mnn-stress", "run"],
}


@pytest.mark.parametrize(
    ("section", "data"),
    [
        (Segment, SEGMENT),
        (Segment, SEGMENT | {"status": "killed", "iterations_rerun": 3}),
        (Segment, SEGMENT | {"iterations_rerun": 0, "iterations_lost": 279}),
        (ReferenceEntry, {"variant_id": "r", "status": "done", "completed": 3, "crashes": 0}),
        (
            ReferenceEntry,
            {"variant_id": "r", "status": "done", "completed": 3, "crashes": 0}
            | {"onnxruntime": "not installed"},
        ),
        (DiskSection, {}),
        (DiskSection, {"budget_bytes": 10, "used_bytes": 4, "stopped_at": "t"}),
        (AdaptiveSection, {}),
        (AdaptiveSection, {"pool_s": 1.5}),
        (AdaptiveSection, {"pool_s": 1.5, "allocated_at": "t", "variants": {}}),
    ],
)
def test_a_section_reads_back_to_the_json_it_was_read_from(section, data):
    assert section.from_dict(data).to_dict() == data


@pytest.mark.parametrize("section", [Segment, ReferenceEntry, DiskSection, AdaptiveSection])
def test_an_unknown_key_is_an_error_not_a_dropped_fact(section):
    data = {"variant_id": "r", "status": "done", "completed": 3, "crashes": 0}
    data = SEGMENT if section is Segment else data if section is ReferenceEntry else {}
    with pytest.raises(TypeError, match="unknown key"):
        section.from_dict({**data, "surprise": 1})


def test_a_segment_status_is_the_run_status_enum():
    assert Segment.from_dict(SEGMENT).status is RunStatus.RUNNING


def test_a_listener_change_is_applied_strictly():
    disk = DiskSection()
    disk.update({"values_stopped_at": "t"})
    assert disk.to_dict() == {"values_stopped_at": "t"}
    with pytest.raises(TypeError, match="unknown key"):
        disk.update({"values_stoped_at": "t"})


def test_a_real_runs_manifest_reads_back_to_the_same_json(scenario_file, tmp_path):
    """Every section present: a reference per scenario, a segment, a disk budget, an
    adaptive night; typed and written again, the manifest is the one the run wrote."""
    path = scenario_file(
        "name: typed\nmodel: tiny\nduration: 2s\nmatrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--max-disk", "200MiB")
    written = json.loads((out / "manifest.json").read_text())
    assert written["reference"] and written["segments"] and written["disk"]["budget_bytes"]
    assert "pool_s" in written["adaptive"]
    data = ManifestData.from_dict(written)
    assert isinstance(data.reference["typed"], ReferenceEntry)
    assert json.loads(json.dumps(data.to_dict(), default=str)) == written


_MANIFEST = {
    "run_id": "r",
    "command": ["mnn-stress", "run"],
    "cwd": "/",
    "started": "2026-12-07T10:00:00.000+00:00",
    "ended": None,
    "status": "complete",
    "reason": None,
    "concurrency": 2,
    "budget": {"iterations": 5, "duration_s": None},
    "test_fault": None,
    "owner": SEGMENT["owner"],
    "host": {},
    "versions": {"MNN": "3.6.1"},
    "scenarios": [{"name": "s"}],
    "variants": {
        "v1": {
            "scenario": "s",
            "label": "api=session",
            "params": {"api": "session"},
            "status": "done",
            "completed": 5,
            "crashes": 0,
            "next_iterations": [5],
            "stop_iteration": 5,
            "duration_s": None,
            "workers_started": 1,
            "used_s": 0.5,
        }
    },
    "reference": {"s": {"variant_id": "r1", "status": "done", "completed": 3, "crashes": 0}},
    "segments": [SEGMENT],
    "disk": {"budget_bytes": 10},
    "adaptive": {"pool_s": 1.0, "allocated_at": "t", "variants": {}},
    "pauses": [],
    "damaged": [],
}


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(run_id=7),
        lambda m: m.update(ended=1.5),
        lambda m: m["versions"].update(MNN=3.6),
        lambda m: next(iter(m["variants"].values())).update(label=5),
        lambda m: next(iter(m["variants"].values())).update(completed="many"),
        lambda m: next(iter(m["reference"].values())).update(onnxruntime=7),
        lambda m: m["segments"][0].update(started=12),
        lambda m: m["disk"].update(budget_bytes="17M"),
        lambda m: m["adaptive"].update(variants=[]),
    ],
)
def test_a_value_of_the_wrong_type_is_a_manifest_that_cannot_be_read(edit, tmp_path):
    """Found by a hostile review: such a value went through to the summary's models and
    every reader ended in "bug in mnn-stress" (70). It is refused where it is read."""
    manifest = json.loads(json.dumps(_MANIFEST))
    edit(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunDirError, match="not a manifest of this version"):
        load_manifest(tmp_path)
    ManifestData.from_dict(json.loads(json.dumps(_MANIFEST)))  # untouched, it reads


def test_a_reader_of_a_manifest_with_a_wrong_type_says_so_and_goes_on(scenario_file, tmp_path):
    path = scenario_file("name: typed\nmodel: tiny\niterations: 5\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["versions"]["MNN"] = 3.6
    (out / "manifest.json").write_text(json.dumps(manifest))
    done = run_cli("summary", str(out), check=False)
    assert done.returncode == 0, done.stderr
    assert "manifest.json cannot be read" in done.stdout + done.stderr
