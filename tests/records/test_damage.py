"""Damaged files are a clear state: a part left empty, truncated or with zeroed pages by a
machine crash (parts are not fsynced), and a damaged manifest or journal. Readers skip the
part and say which file and how many rows; compaction and ``run --resume`` set it aside
into ``damaged/`` and go on; ``summary`` works from the rows when the manifest is gone."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from stress.analysis.dataset import damaged_parts, iterations_table
from stress.analysis.scan import Scan, _padded
from stress.records import damage
from stress.records.compaction import FANOUT, Compactor
from stress.records.parts import PartWriter, listed
from stress.records.schema import ITERATION_SCHEMA
from tests.conftest import run_cli, start_run, wait_for_iterations

ROWS = 300  # per part in the unit tests


def damage_file(path: Path, kind: str) -> None:
    """What a crash leaves behind the part's name: nothing, the first half, or every data page
    zeroed with the footer intact (then only a whole read can tell)."""
    data = path.read_bytes()
    if kind == "empty":
        data = b""
    elif kind == "truncated":
        data = data[: len(data) // 2]
    else:
        footer = int.from_bytes(data[-8:-4], "little") + 8
        data = data[:4] + bytes(len(data) - footer - 4) + data[-footer:]
    path.write_bytes(data)
    if kind == "zeroed":
        assert pq.read_metadata(path).num_rows > 0  # the footer still reads


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    """Each test finds damage itself (the frame checks are remembered per process)."""
    monkeypatch.setattr(damage, "_errors", {})


def write_rows(directory: Path, parts: int) -> None:
    writer = PartWriter(directory)
    for i in range(parts):
        iterations = range(i * ROWS, (i + 1) * ROWS)
        values = [os.urandom(256) for _ in iterations]
        columns = {"variant_id": ["v"] * ROWS, "iteration": iterations, "values": values}
        writer.write(_padded(pa.table(columns)))


KINDS = ["empty", "truncated", "zeroed"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader", ["dataset", "scan"])
def test_readers_skip_a_damaged_part_and_say_which(tmp_path, kind, reader):
    run = tmp_path / "run"
    write_rows(run / "iterations", 3)
    damage_file(run / "iterations" / "part-000001.parquet", kind)
    if reader == "dataset":
        table = iterations_table(run, columns=["iteration", "values"])
        got = sorted(table["iteration"].to_pylist())
    else:
        with Scan(run / "iterations") as scan:
            query = 'SELECT iteration, octet_length("values") AS n FROM run_rows ORDER BY iteration'
            got = scan.table(query)["iteration"].to_pylist()
    assert got == list(range(ROWS)) + list(range(2 * ROWS, 3 * ROWS))
    (found,) = damaged_parts(run)
    assert (found.dataset, found.file) == ("iterations", "part-000001.parquet")
    assert found.set_aside is None
    assert found.rows == (ROWS if kind == "zeroed" else None)  # from the footer, when it reads
    said = {"empty": "empty", "truncated": "no Parquet footer", "zeroed": "intact Parquet frame"}
    assert said[kind] in found.error
    rows = f"{ROWS} rows" if kind == "zeroed" else "an unknown number of rows"
    assert found.describe().endswith(f"; {rows} not read")


@pytest.mark.parametrize("kind", KINDS)
def test_compaction_sets_a_damaged_source_aside_once_and_merges_the_rest(tmp_path, kind):
    directory = tmp_path / "run" / "iterations"
    write_rows(directory, FANOUT + 1)
    damage_file(directory / "part-000003.parquet", kind)
    compactor = Compactor({directory: ITERATION_SCHEMA})
    for _ in range(3):  # the running merge, and more steps that must not try it again
        compactor.step()
        compactor.finish()
    assert compactor.take_errors() == []
    (note,) = compactor.take_notes()
    assert "compaction set aside a damaged part" in note and "part-000003.parquet" in note
    aside = tmp_path / "run" / "damaged" / "iterations"
    assert sorted(p.name for p in aside.iterdir()) == [
        "part-000003.parquet",
        "part-000003.parquet.json",
    ]
    assert compactor.merges >= 1 and len(listed(directory)) == 1
    kept = iterations_table(tmp_path / "run", columns=["iteration"])["iteration"].to_pylist()
    assert sorted(kept) == [i for i in range((FANOUT + 1) * ROWS) if i // ROWS != 3]
    (found,) = damaged_parts(tmp_path / "run")
    assert found.set_aside == "damaged/iterations/part-000003.parquet"
    assert PartWriter(directory).sequence == FANOUT + 1  # numbering goes on past it


def test_a_new_part_is_numbered_past_the_last_one_set_aside(tmp_path):
    directory = tmp_path / "run" / "iterations"
    write_rows(directory, 3)
    damage_file(directory / "part-000002.parquet", "truncated")
    damage.set_aside(directory / "part-000002.parquet", tmp_path / "run")
    assert PartWriter(directory).sequence == 3


@pytest.mark.parametrize(
    "failure",
    [
        MemoryError("out of memory"),
        pa.ArrowMemoryError("malloc of 256 MiB failed"),
        OSError(errno.EMFILE, "Too many open files"),
        OSError(errno.EACCES, "Permission denied"),
        RuntimeError("Query interrupted"),
    ],
    ids=["MemoryError", "ArrowMemoryError", "EMFILE", "EACCES", "interrupt"],
)
def test_a_failure_of_the_environment_is_never_taken_for_damage(tmp_path, failure):
    """Out of memory, out of file descriptors, a permission, an interrupt: the reader's
    failure is raised as it is, and no intact part is marked, skipped or set aside."""
    directory = tmp_path / "run" / "iterations"
    write_rows(directory, 2)
    parts = [p.path for p in listed(directory)]
    assert damage.find_damaged(parts, failure) == []
    with pytest.raises(type(failure)):  # a whole read failing the same way is not damage
        damage.find_damaged(parts, OSError("Couldn't deserialize thrift"), _raise(failure))
    assert not any(damage.damaged(path) for path in parts)


def _raise(failure: BaseException):
    def read(path: Path) -> None:
        raise failure

    return read


def test_a_query_mistake_reads_no_part_whole(tmp_path):
    """A missing column names no file: no part is read whole to look for a culprit (that
    was every part of a night of big outputs, decoded for nothing)."""
    directory = tmp_path / "run" / "iterations"
    write_rows(directory, 3)
    read: list[Path] = []
    mistake = pa.ArrowInvalid("No match for FieldRef.Name(no_such_column)")
    assert damage.find_damaged([p.path for p in listed(directory)], mistake, read.append) == []
    assert read == []
    with pytest.raises(pa.ArrowInvalid):
        iterations_table(tmp_path / "run", columns=["no_such_column"])


def test_a_part_that_cannot_be_opened_is_an_error_not_damage(tmp_path):
    """Listing checks each part's frame: a part the reader may not open is raised, never
    listed as damaged (and never set aside)."""
    directory = tmp_path / "run" / "iterations"
    write_rows(directory, 1)
    (part,) = listed(directory)
    real_open = open

    def refusing(path, *args, **kwargs):
        if str(path) == str(part.path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("builtins.open", refusing)
        with pytest.raises(PermissionError):
            damage.damaged(part.path)
    assert not damage.damaged(part.path)


# --- real runs -------------------------------------------------------------------------------

SCENARIO = """
name: damaged
model: tiny
iterations: 200
matrix:
  api: [session, module]
"""


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> Path:
    """A complete run of two variants, its rows split into one part per variant."""
    folder = tmp_path_factory.mktemp("clean")
    (folder / "s.yaml").write_text(SCENARIO)
    out = folder / "run"
    run_cli("run", str(folder / "s.yaml"), "--out", str(out), "--workers", "2")
    (merged,) = listed(out / "iterations")
    table = pq.read_table(merged.path)
    merged.path.unlink()
    for number, variant in enumerate(sorted(set(table["variant_id"].to_pylist()))):
        rows = table.filter(pa.compute.equal(table["variant_id"], variant))
        pq.write_table(rows, out / "iterations" / f"part-{number:06d}.parquet")
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def unwrapped(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


def summary_json(run: Path) -> dict:
    return json.loads(run_cli("summary", str(run), "--json").stdout)


def test_a_damaged_iterations_part_is_said_by_summary_report_and_compare(clean_run, tmp_path):
    run = copy_of(clean_run, tmp_path)
    damage_file(run / "iterations" / "part-000001.parquet", "zeroed")
    found = summary_json(run)
    verdicts = {v["label"]: v["verdict"] for v in found["variants"]}
    lost = next(v for v in found["variants"] if v["verdict"] == "INCOMPLETE")
    assert sorted(verdicts.values()) == ["INCOMPLETE", "ok"]
    (part,) = found["damage"]["parts"]
    assert (part["dataset"], part["file"]) == ("iterations", "part-000001.parquet")
    assert part["rows"] == 200  # from its footer
    said = (
        "damaged part file skipped: iterations/part-000001.parquet (",
        "unreadable behind an intact Parquet frame",
        "; 200 rows not read",
    )
    assert all(text in found["warnings"][0] for text in said)
    missing = f"rows missing in {lost['variant_id']} damaged {lost['label']}: 0 of 200 iterations"
    assert any(line.startswith(missing) for line in found["warnings"])

    text = unwrapped(run_cli("summary", str(run)).stdout)
    assert "warning: damaged part file skipped: iterations/part-000001.parquet" in text
    html = tmp_path / "report.html"
    report = run_cli("report", str(run), "--html", str(html), check=False)
    assert report.returncode == 0, report.stderr  # a damaged part is not a finding
    assert "warning: damaged part file skipped" in unwrapped(report.stdout)
    assert "part-000001.parquet" in html.read_text() and "Traceback" not in report.stderr
    compared = run_cli("compare", str(clean_run), str(run), check=False)
    assert compared.returncode == 0, compared.stderr
    said = "B: warning: damaged part file skipped: iterations/part-000001.parquet"
    assert said in unwrapped(compared.stdout)


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_reference_part_is_named_and_no_reference_says_why(clean_run, tmp_path, kind):
    run = copy_of(clean_run, tmp_path)
    (part,) = listed(run / "reference" / "iterations")
    damage_file(part.path, kind)
    found = summary_json(run)
    assert found["damage"]["parts"][0]["dataset"] == "reference/iterations"
    said = f"damaged part file skipped: reference/iterations/{part.path.name}"
    assert found["warnings"][0].startswith(said)
    problem = found["references"]["damaged"]["problem"]
    assert problem == "no reference (its rows are in a damaged part file): outputs are not graded"


def test_a_damaged_event_part_is_named_and_the_deaths_it_held_are_missing(scenario_file, tmp_path):
    path = scenario_file("name: dies\nmodel: tiny\niterations: 200\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference", fault="exit@50", check=False)
    (event_part,) = listed(out / "events")
    damage_file(event_part.path, "zeroed")
    found = summary_json(out)
    (variant,) = found["variants"]
    said = f"damaged part file skipped: events/{event_part.path.name}"
    assert found["warnings"][0].startswith(said) and found["warnings"][0].endswith("1 row not read")
    death = f"death events missing in {variant['variant_id']} dies api=session: 0 of 1 worker"
    assert any(line.startswith(death) for line in found["warnings"])


def test_a_death_whose_event_is_damaged_is_still_a_finding(scenario_file, tmp_path):
    """The run counted the death (manifest) though its event is unreadable: the variant stays
    CRASHED and ``report`` still exits 1. It read 'ok' and exit 0: the damage hid a crash."""
    path = scenario_file("name: dies\nmodel: tiny\niterations: 200\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference", fault="segv@50", check=False)
    (event_part,) = listed(out / "events")
    damage_file(event_part.path, "empty")
    (variant,) = summary_json(out)["variants"]
    assert variant["verdict"] == "CRASHED"
    assert variant["deaths_counted"] == 1 and variant["rates"]["death"]["count"] == 1
    report = run_cli("report", str(out), check=False)
    assert report.returncode == 1, report.stderr
    assert "deaths: 1 with no event (counted by the run)" in unwrapped(report.stdout)
    assert "CRASHED" in run_cli("summary", str(out)).stdout


def test_resume_sets_damaged_parts_aside_and_goes_on(scenario_file, tmp_path):
    path = scenario_file("name: resumed\nmodel: tiny\nseed: 0\n")
    out = tmp_path / "run"
    # stopped at its first progress lines (about 1 s in), with the rest left to resume
    run = start_run(path, out, "--duration", "3s", "--workers", "1", "--no-reference")
    wait_for_iterations(out, 2000)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130
    part = listed(out / "iterations")[-1]  # a stopped run leaves its parts as written
    damage_file(part.path, "zeroed")
    done = run_cli("run", "--resume", str(out), timeout=120)
    assert "resume set aside a damaged part: iterations/" in done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    (recorded,) = manifest["damaged"]
    assert recorded["file"] == part.path.name and recorded["rows"] > 0
    assert (out / recorded["set_aside"]).is_file()
    assert part.path.name not in {p.path.name for p in listed(out / "iterations")}  # not reused
    table = iterations_table(out, columns=["thread", "iteration"])
    iterations = sorted(table["iteration"].to_pylist())
    assert iterations == list(range(len(iterations)))  # its rows run again: no gap, no duplicate
    found = summary_json(out)
    said = f"damaged part file set aside: iterations/{part.path.name}"
    assert found["warnings"][0].startswith(said)


def test_resume_runs_a_reference_again_whose_rows_were_damaged(scenario_file, tmp_path):
    """The reference's only part damaged by a crash: --resume runs the reference again (three
    iterations), and the night is graded. It was left 'done', and every variant ungraded."""
    path = scenario_file("name: regraded\nmodel: tiny\nseed: 0\n")
    out = tmp_path / "run"
    run = start_run(path, out, "--duration", "3s", "--workers", "1")  # stopped about 1 s in
    wait_for_iterations(out, 500)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130
    (part,) = listed(out / "reference" / "iterations")
    damage_file(part.path, "empty")
    done = run_cli("run", "--resume", str(out), timeout=120)
    assert "resume set aside a damaged part: reference/iterations/" in done.stderr
    found = summary_json(out)
    assert found["references"]["regraded"]["problem"] is None
    (variant,) = found["variants"]
    assert variant["grades"]["exact"] == variant["iterations"] > 500


def test_compaction_meets_parts_damaged_during_a_run_and_does_not_loop(scenario_file, tmp_path):
    path = scenario_file("name: during\nmodel: tiny\nduration: 9s\n")
    out = tmp_path / "run"
    run = start_run(path, out, "--workers", "1", "--no-reference")
    # part 0 is the empty one holding the schema: the first two with rows are 1 and 2
    first = out / "iterations" / "part-000001.parquet"
    second = out / "iterations" / "part-000002.parquet"
    wait_for_iterations(out, 1)
    while not (out / "iterations" / "part-000003.parquet").exists():
        assert run.poll() is None
        time.sleep(0.01)
    damage_file(first, "zeroed")  # found only when a merge reads it
    damage_file(second, "truncated")  # found by its footer
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    log = (out / "run.log").read_text()
    assert "compaction left some parts" not in log  # no merge was tried again and again
    assert log.count("compaction set aside a damaged part") == 2
    aside = sorted(p.name for p in (out / "damaged" / "iterations").iterdir())
    assert aside == [f"{p.name}{end}" for p in (first, second) for end in ("", ".json")]
    manifest = json.loads((out / "manifest.json").read_text())
    errors = {entry["file"]: entry["error"] for entry in manifest["damaged"]}
    assert "intact Parquet frame" in errors[first.name] and "footer" in errors[second.name]
    found = summary_json(out)
    heads = [line.split(":")[0] for line in found["warnings"][:2]]
    assert heads == ["damaged part file set aside"] * 2


# --- manifest and journal ------------------------------------------------------------------


def damage_manifest(run: Path, kind: str) -> str:
    """Returns the run id it held."""
    manifest = run / "manifest.json"
    text = manifest.read_bytes()
    damaged = {"empty": b"", "truncated": text[: len(text) // 2], "garbage": os.urandom(500)}
    manifest.write_bytes(damaged[kind])
    return json.loads(text)["run_id"]


@pytest.mark.parametrize("kind", ["empty", "truncated", "garbage"])
def test_summary_works_from_the_rows_when_the_manifest_is_damaged(clean_run, tmp_path, kind):
    run = copy_of(clean_run, tmp_path)
    manifest = run / "manifest.json"
    run_id = damage_manifest(run, kind)
    found = summary_json(run)
    assert (found["status"], found["reason"]) == ("unknown", "manifest.json cannot be read")
    assert found["run_id"] == run_id  # from the rows
    counts = {v["label"]: (v["iterations"], v["status"], v["verdict"]) for v in found["variants"]}
    assert counts == {
        "api=session": (200, "unknown", "UNKNOWN"),
        "api=module": (200, "unknown", "UNKNOWN"),
    }
    assert found["warnings"][0].startswith(f"cannot read {manifest}")
    assert "each variant's state and budget" in found["warnings"][0]


def test_a_variant_keeps_its_label_when_the_manifest_is_damaged(scenario_file, tmp_path):
    """Labels name the factors the matrix varies, from the manifest or, without it, from
    the rows: ``threads=1`` stays ``threads=1`` (not ``api=session``, its non-defaults)."""
    path = scenario_file("name: labels\nmodel: tiny\niterations: 20\nmatrix:\n  threads: [1, 2]\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference")
    labels = {v["variant_id"]: v["label"] for v in summary_json(out)["variants"]}
    damage_manifest(out, "garbage")
    assert {v["variant_id"]: v["label"] for v in summary_json(out)["variants"]} == labels
    assert sorted(labels.values()) == ["threads=1", "threads=2"]


def test_report_and_compare_go_on_without_the_manifest(clean_run, tmp_path):
    run = copy_of(clean_run, tmp_path)
    manifest = run / "manifest.json"
    damage_manifest(run, "garbage")
    report = run_cli("report", str(run), check=False)
    assert report.returncode == 0, report.stderr
    assert f"warning: cannot read {manifest}" in unwrapped(report.stdout)
    assert "variants and counts come from the rows" in unwrapped(report.stdout)
    compared = run_cli("compare", str(clean_run), str(run), check=False)
    assert compared.returncode == 0, compared.stderr
    assert f"B: warning: cannot read {manifest}" in unwrapped(compared.stdout)
    manifest.unlink()
    (run / "iterations").rename(tmp_path / "elsewhere")  # no manifest and no rows: no run
    refused = run_cli("summary", str(run), check=False)
    assert refused.returncode == 2 and "is not a run directory" in refused.stderr


def test_journal_lines_that_cannot_be_read_are_skipped_and_said(scenario_file, tmp_path):
    path = scenario_file("name: journaled\nmodel: tiny\nduration: 30s\n")
    out = tmp_path / "run"
    run = start_run(path, out, "--workers", "1", "--no-reference")
    wait_for_iterations(out, 1000)
    time.sleep(1.5)  # the rows too reach the disk
    os.kill(run.pid, signal.SIGKILL)  # the manifest still says running: the journal counts
    run.wait(timeout=30)
    journal = out / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    variant = json.loads(lines[-1])["variant"]
    zeroed = bytes(40) + b"\n"  # a page the crash zeroed
    unknown = json.dumps({"ts": 1.0, "variant": variant, "compl\x00ted": 5}).encode() + b"\n"
    journal.write_bytes(b"".join([lines[0], zeroed, unknown, *lines[1:]]))
    found = summary_json(out)
    assert found["status"] == "killed"
    assert "journal.jsonl: 2 line(s) cannot be read (line 2, 3)" in found["warnings"]
    (entry,) = found["variants"]
    assert entry["completed"] >= 1000 and entry["iterations"] > 0  # the journal folded in
