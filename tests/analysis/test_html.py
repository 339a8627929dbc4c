"""The HTML report: real runs (faults injected into real workers), written and parsed back."""

from __future__ import annotations

import io
import re
import shutil
import signal
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from stress.analysis.html import human_bytes, when, write_html
from stress.analysis.plots import running_seconds, thinned_series
from stress.analysis.summary import summarize
from stress.analysis.summary_model import RunSummary
from stress.models.resolve import resolve_model
from tests.analysis.browser import CHROMIUM, render
from tests.conftest import first_worker, run_cli, start_run

HOSTILE_MODEL = "<img src=x onerror=alert(1)>.mnn"  # a legal file name: no slash
HOSTILE = "</td><script>alert(1)</script><!-- $\\frac{1}{0}$ --> & \"'"


class Page(HTMLParser):
    """The parsed report: sections by their heading (the header's is ``title``), tags,
    attributes, table rows."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.sections: dict[str, list[str]] = {}  # heading -> texts and svg markers under it
        self.rows: dict[str, list[list[str]]] = {}  # h2 heading -> table rows (cell texts)
        self._heading: str | None = None
        self._h2 = self._current = self.title = ""
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs
        if tag in ("h1", "h2", "h3"):
            self._heading = ""
        elif tag == "svg":
            self._add("<svg>")
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self._current = self._heading.strip()
            self._h2 = self._current if tag != "h3" else self._h2
            self.title = self.title or self._current
            self.sections.setdefault(self._current, [])
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.setdefault(self._h2, []).append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading += data
        else:
            self._add(data)
        if self._cell is not None:
            self._cell.append(data)

    def _add(self, data: str) -> None:
        """Into the current section, and into its h2's too when it is an h3."""
        for heading in {self._current, self._h2}:
            self.sections.setdefault(heading, []).append(data)

    def text(self, section: str) -> str:
        return "".join(self.sections[section])

    def row_of(self, section: str, *cells: str) -> list[str]:
        found = [row for row in self.rows[section] if all(c in row for c in cells)]
        assert len(found) == 1, (cells, self.rows[section])
        return found[0]


@dataclass
class Axes:
    """One plot's axes as a reader sees them: the texts drawn on it."""

    title: str
    x_ticks: list[str]
    x_label: str
    y_ticks: list[str]
    y_label: str
    legend: list[str]


SVG = "{http://www.w3.org/2000/svg}"


def figures(text: str) -> dict[str, list[Axes]]:
    """The axes of each plot of the report, by the heading above it, in drawing order."""
    found = re.finditer(r"<h3>([^<]*)</h3>(<svg.*?</svg>)", text, flags=re.DOTALL)
    return {heading: _axes(ET.fromstring(svg)) for heading, svg in (m.groups() for m in found)}


def _axes(svg: ET.Element) -> list[Axes]:
    found = []
    for axes in svg.iter(f"{SVG}g"):
        if _id(axes).startswith("axes_"):
            x, y = (g for g in axes if _id(g).startswith("matplotlib.axis"))
            title = " ".join(_words(g) for g in axes if _id(g).startswith("text_"))
            legends = [g for g in axes if _id(g).startswith("legend_")]
            legend = [_words(g) for box in legends for g in box if _id(g).startswith("text_")]
            found.append(Axes(title, *_ticks(x, "xtick_"), *_ticks(y, "ytick_"), legend))
    return found


def _ticks(axis: ET.Element, prefix: str) -> tuple[list[str], str]:
    """The axis's tick labels (minor ticks have none) and its label."""
    ticks = [_words(g) for g in axis if _id(g).startswith(prefix)]
    label = " ".join(_words(g) for g in axis if _id(g).startswith("text_"))
    return [t for t in ticks if t], label


def _id(element: ET.Element) -> str:
    return element.get("id") or ""


def _words(element: ET.Element) -> str:
    return "".join(t.text or "" for t in element.iter(f"{SVG}text")).strip()


def form(label: str) -> str:
    """A tick label with each run of digits as N: '01:39' is N:N, '05' is N, '2.5 ms' N.N ms."""
    return re.sub(r"\d+", "N", label)


_REPORTS: dict[Path, tuple[Page, str]] = {}  # a run's own report, written once


def report(run_dir: Path, summary: RunSummary | None = None) -> tuple[Page, str]:
    """The report of ``summary`` (default: the run's own, summarized and written once per run
    and then shared: the tests only read it), written to a file and parsed back."""
    if summary is None and run_dir in _REPORTS:
        return _REPORTS[run_dir]
    path = run_dir.parent / f"{run_dir.name}.html"
    write_html(summary or summarize(run_dir), run_dir, path)
    text = path.read_text(encoding="utf-8")
    if summary is None:
        _REPORTS[run_dir] = Page(text), text
        return _REPORTS[run_dir]
    return Page(text), text


FAULTY = """
    name: faulty
    model: "{model}"
    iterations: 40
    max_crashes: 1
    timeout: 30s
    matrix:
      api: [session, module]
      num_thread: [1, 2]
"""


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory) -> Path:
    """Module API: every output +1 (mismatch); num_thread 1: one ulp off (close); num_thread
    2: SIGSEGV at iteration 5, then a fresh worker. The model file has a hostile name."""
    directory = tmp_path_factory.mktemp("faulty")
    shutil.copy(resolve_model("tiny", Path(".")).path, directory / HOSTILE_MODEL)
    scenario = directory / "faulty.yaml"
    scenario.write_text(FAULTY.format(model=HOSTILE_MODEL).replace("\n    ", "\n"))
    out = directory / "run"
    fault = "perturb@0+?api=module,ulp@0+?num_thread=1,segv@5?num_thread=2"
    run_cli("run", str(scenario), "--out", str(out), "--workers", "2", fault=fault)
    return out


TWO_PASSES = """
    name: passes
    model: tiny
    timeout: 10s
    record: {max_value_bytes: 0}
    tolerance: {atol: 0, rtol: 0}
    matrix:
      api: [session, module]
"""


@pytest.fixture(scope="module")
def two_pass_run(tmp_path_factory) -> Path:
    """An adaptive run on one worker: both variants' first passes, then their second ones, so
    a variant's workers ran seconds apart. Module API: one element +1 (mismatch), graded by
    min/max/mean alone (no values stored)."""
    directory = tmp_path_factory.mktemp("passes")
    scenario = directory / "passes.yaml"
    scenario.write_text(TWO_PASSES.replace("\n    ", "\n"))
    out = directory / "run"
    options = ["--duration", "9s", "--workers", "1"]
    run_cli("run", str(scenario), "--out", str(out), *options, fault="perturb@0+?api=module")
    return out


@pytest.mark.integration
def test_report_has_every_section_with_the_run_in_it(faulty_run):
    page, _ = report(faulty_run)
    assert {"Variants", "Plots", "Attribution", "Crash signatures"} <= set(page.sections)
    mismatching = page.row_of("Variants", "api=module num_thread=1")
    assert mismatching[0] == "MISMATCH" and "mismatch 100 %" in " ".join(mismatching)
    crashed = [page.row_of("Variants", f"api={api} num_thread=2") for api in ("session", "module")]
    assert all(row[0] == "CRASHED" and "1 crash" in row for row in crashed)
    assert page.row_of("Variants", "api=session num_thread=1")[0] == "ok"
    assert "1 ok, 2 CRASHED, 1 MISMATCH" in page.text(page.title)
    signature = page.row_of("Crash signatures", "SIGSEGV")
    assert signature[0] == "2" and signature[1] == "crash"


@pytest.mark.integration
def test_plots_are_inline_svg_showing_the_failures(faulty_run):
    page, _ = report(faulty_run)
    plots = ["Failure rates", "Latency and RSS over time", "Differences from the reference"]
    plots.append("Worker deaths over time")
    assert [page.sections[p].count("<svg>") for p in plots] == [1, 1, 1, 1]
    assert page.tags.count("svg") == 4
    deaths = page.text("Worker deaths over time")
    assert "faulty api=session num_thread=2" in deaths and "crash" in deaths
    assert "faulty api=module num_thread=1" not in deaths  # it never died
    differences = page.text("Differences from the reference")
    assert "close" in differences and "mismatch" in differences
    assert "api=session num_thread=2: death" in page.text("Failure rates")


@pytest.mark.integration
def test_nothing_is_fetched_and_hostile_file_names_stay_text(faulty_run):
    page, text = report(faulty_run)
    assert "img" not in page.tags and "script" not in page.tags
    assert not [(k, v) for k, v in page.attributes if k in ("src", "onerror")]
    hrefs = [v for k, v in page.attributes if k in ("href", "xlink:href")]
    assert hrefs and all(v and v.startswith("#") for v in hrefs)  # SVG's own references
    assert "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "").replace(
        'xmlns:xlink="http://www.w3.org/1999/xlink"', ""
    )
    assert HOSTILE_MODEL in page.row_of("References and tolerance", "faulty")


@pytest.mark.integration
def test_hostile_text_anywhere_in_the_summary_cannot_inject_markup(faulty_run):
    summary = summarize(faulty_run)
    summary.reason = HOSTILE
    for variant in summary.variants:
        variant.label += HOSTILE
    for group in summary.crash_signatures:
        group.frames = [HOSTILE, "x.py:<module>"]
    for found in summary.attribution.values():
        found.sentence = HOSTILE
        for score in found.scores:
            score.predicate = HOSTILE
    for reference in summary.references.values():
        reference.problem = HOSTILE
    page, text = report(faulty_run, summary)
    assert "script" not in page.tags and "img" not in page.tags
    assert page.tags.count("svg") == 4  # labels with '$' are not mathtext
    assert "</td><script>" not in text
    assert HOSTILE in page.text("Attribution") and HOSTILE in page.text("Failure rates")
    assert "x.py:<module>" in page.text("Crash signatures")
    assert HOSTILE in page.row_of("References and tolerance", "faulty")


@pytest.mark.integration
def test_a_run_with_no_failures_says_none(scenario_file, tmp_path):
    path = scenario_file(
        "name: clean\nmodel: tiny\niterations: 30\nmatrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out))
    page, _ = report(out)
    assert page.tags.count("svg") == 1  # latency and RSS only
    plainly = {
        "Failure rates": "No variant failed.",
        "Differences from the reference": "No close or mismatching output",
        "Worker deaths over time": "No deaths.",
        "Crash signatures": "No worker died.",
    }
    assert {s: page.text(s).strip()[: len(said)] for s, said in plainly.items()} == plainly
    assert "none:" not in "".join(map(page.text, page.sections))
    assert "2 ok" in page.text(page.title)
    assert "No problems." in page.text("Variants")
    assert [row[0] for row in page.rows["Variants"][1:]] == ["ok", "ok"]


@pytest.mark.integration
def test_an_interrupted_run_without_iterations_still_reports(scenario_file, tmp_path):
    path = scenario_file("name: stuck\nmodel: tiny\niterations: 100\ntimeout: 60s\n")
    out = tmp_path / "run"
    coordinator = start_run(path, out, "--no-reference", fault="hang@0")
    first_worker(coordinator.pid)
    coordinator.send_signal(signal.SIGINT)  # the worker cannot finish iteration 0 ...
    time.sleep(0.5)
    coordinator.send_signal(signal.SIGINT)  # ... so it is killed
    coordinator.communicate(timeout=60)
    summary = summarize(out)
    assert summary.variants[0].iterations == 0
    page, _ = report(out, summary)
    assert "status interrupted" in page.text(page.title)
    assert page.row_of("Variants", "stuck")[0] == "INTERRUPTED"
    assert page.tags.count("svg") == 0
    assert page.text("Latency and RSS over time").strip() == "No iterations."


@pytest.mark.integration
def test_latency_and_rss_follow_the_running_time_without_the_gaps(two_pass_run):
    """The axis spans the variant's own running (its workers' spans), not the wall-clock
    time from its first iteration to its last, which holds the other variant's pass."""
    rows = ds.dataset(two_pass_run / "iterations").to_table(["variant_id", "worker_id", "ts"])
    spans = rows.to_pandas().groupby(["variant_id", "worker_id"]).ts.agg(["min", "max"])
    by_label = {f"passes {v.label}": v.variant_id for v in summarize(two_pass_run).variants}
    panels = figures(report(two_pass_run)[1])["Latency and RSS over time"]
    assert len(panels) == 4  # latency and RSS of each variant
    gaps = []
    for latency, rss in zip(panels[::2], panels[1::2]):
        label = latency.title.split("  [")[0]  # a drift flag may follow: "  [latency_drift]"
        workers = spans.loc[by_label[label]]
        running = (workers["max"] - workers["min"]).sum().total_seconds()
        gaps.append((workers["max"].max() - workers["min"].min()).total_seconds() - running)
        for axes in (latency, rss):
            seconds = [float(tick.removesuffix(" s")) for tick in axes.x_ticks]
            assert min(seconds) == 0 and max(seconds) <= 1.06 * running, (axes, running)
    assert max(gaps) > 1.5  # a variant's workers were seconds apart
    assert all("running time of the variant" in axes.x_label for axes in panels[-2:])


@pytest.mark.integration
@pytest.mark.parametrize("run", ["faulty_run", "two_pass_run"])
def test_tick_labels_of_an_axis_are_of_one_form_with_their_unit(run, request):
    plots = figures(report(request.getfixturevalue(run))[1])
    rates = plots["Failure rates"][0]
    numeric = [(rates.x_ticks, "%")]
    series = plots["Latency and RSS over time"]
    for latency, rss in zip(series[::2], series[1::2]):
        numeric += [(latency.x_ticks, "s"), (rss.x_ticks, "s")]
        numeric += [(latency.y_ticks, "ms"), (rss.y_ticks, "MiB")]
    for ticks, unit in numeric:
        assert len({form(t) for t in ticks}) == 1 and ticks[0].endswith(f" {unit}"), ticks
        assert len(set(ticks)) == len(ticks) > 1, ticks  # no two ticks read the same
    if run == "faulty_run":
        deaths = plots["Worker deaths over time"][0]
        assert {form(t) for t in deaths.x_ticks} == {"N:N:N"}, deaths.x_ticks
        assert re.fullmatch(r"time \(UTC\), \d{4}-\d\d-\d\d", deaths.x_label)


POWER_OF_TEN = re.compile("[1-9]×10⁻?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")


@pytest.mark.integration
@pytest.mark.parametrize("run", ["faulty_run", "two_pass_run"])
def test_differences_have_labelled_ticks_and_say_where_they_are_lower_bounds(run, request):
    """faulty: values stored, exact differences (one ulp and +1); two passes: one difference,
    a lower bound from min/max/mean (no values stored)."""
    page, text = report(request.getfixturevalue(run))
    (differences,) = figures(text)["Differences from the reference"]
    ticks = differences.x_ticks
    assert len(set(ticks)) == len(ticks) >= 3 and all(map(POWER_OF_TEN.fullmatch, ticks)), ticks
    said = page.text("Differences from the reference")
    if run == "two_pass_run":
        assert differences.legend == ["mismatch, a lower bound (values not stored)"]
        assert "1 inexact output(s) graded by min/max/mean only" in said
        assert "is a lower bound, the real one is at least as large." in said
    else:
        assert sorted(differences.legend) == ["close", "mismatch"]
        assert "lower bound" not in said and "min/max/mean" not in said


@pytest.mark.integration
def test_differences_of_no_known_size_are_counted_as_not_drawn(two_pass_run):
    summary = summarize(two_pass_run)
    for variant in summary.variants:
        for output in variant.inexact_outputs:
            output.max_abs = None  # as where min/max/mean were not recorded
    page, _ = report(two_pass_run, summary)
    said = page.text("Differences from the reference")
    assert said.startswith("No close or mismatching output with a known difference.")
    assert "1 inexact output(s) not drawn: their difference has no known size." in said


@pytest.mark.integration
def test_a_variant_none_of_whose_rows_can_be_read_gets_empty_panels(faulty_run):
    summary = summarize(faulty_run)
    summary.variants[0].variant_id = "v0123456789"  # as if its parts were damaged and skipped
    page, text = report(faulty_run, summary)
    panels = figures(text)["Latency and RSS over time"]
    titles = [axes.title.split("  [")[0] for axes in panels]  # without a drift flag
    assert f"faulty {summary.variants[0].label}" in titles


def test_running_time_leaves_out_the_time_between_workers():
    start = np.datetime64("2026-12-07T00:00:00", "ns")
    second = np.timedelta64(1, "s")
    first = start + np.arange(10) * second  # 0 to 9 s
    overlapping = start + np.arange(5, 13) * second  # 5 to 12 s: with the first, 12 s
    later = start + 3600 * second + np.arange(3) * second  # an hour on: at 12 s again
    running = running_seconds([first, later, overlapping])
    assert [r.tolist() for r in running] == [list(range(10)), [12, 13, 14], list(range(5, 13))]
    assert running_seconds([]) == []


@pytest.mark.integration
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it): "
    "the report is not rendered in a browser",
)
def test_a_browser_shows_the_report_with_nothing_fetched_and_no_console_error(faulty_run):
    page = faulty_run.parent / "browsed.html"
    write_html(summarize(faulty_run), faulty_run, page)
    shown = render(page)
    page.with_suffix(".png").write_bytes(shown.png)  # beside the run, to look at
    assert shown.requests == [page.as_uri()]  # the page itself, nothing else
    assert shown.problems == []
    width, height = shown.png_size()
    assert width == 1400 and height > 2000  # the whole page, not the first screen of it
    rgb = (matplotlib.image.imread(io.BytesIO(shown.png))[..., :3] * 255).astype(np.uint32)
    assert np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).size > 50  # drawn
    assert len(shown.svg_sizes) == 4  # every plot laid out, as wide as the page allows
    assert all(w > 1000 and h > 100 for w, h in shown.svg_sizes), shown.svg_sizes


def _rows(workers: int, per_worker: int) -> ds.Dataset:
    """Iteration rows of one variant, in batches that interleave the workers."""
    iteration = np.tile(np.arange(per_worker), workers)
    worker = np.repeat(np.arange(workers), per_worker)
    ts = pa.array(iteration * 1_000_000, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    table = pa.table(
        {
            "variant_id": ["v1"] * iteration.size,
            "worker_id": pa.array(worker, pa.int32()),
            "iteration": iteration,
            "ts": ts,
            "latency_ns": iteration,
            "rss_bytes": iteration << 20,
            "observation": ["fetch"] * iteration.size,
        }
    ).take(np.random.default_rng(0).permutation(iteration.size))
    return ds.dataset(table.to_batches(max_chunksize=7_000))


def test_time_series_are_thinned_per_worker_in_one_pass():
    series = thinned_series(_rows(workers=3, per_worker=50_000), {"v1": 2000, "v2": 10})
    assert sorted(series) == [("v1", 0), ("v1", 1), ("v1", 2)]
    for ts, latency_ms, rss_mib in series.values():
        assert 1000 <= len(ts) <= 2000
        assert np.all(np.diff(ts) > np.timedelta64(0))  # in iteration order, no repeats
        assert rss_mib[0] == 0 and rss_mib[-1] > 49_000  # spans the whole worker
        assert rss_mib[-1] == 49_999  # to its very last iteration
        assert np.allclose(latency_ms * 1e6, rss_mib)  # the columns stay aligned


def test_units_for_people():
    assert human_bytes(512) == "512 B"
    assert human_bytes(-28 * 1024) == "-28.0 KiB"
    assert human_bytes(1.5 * (1 << 20)) == "1.5 MiB"
    assert when("2026-11-25T00:46:02.260+00:00") == "2026-11-25 00:46:02 UTC"
