"""The summary table as a user reads it, at any width: verdict, id and variant whole on an
80-column terminal as on a 200-column one; no label spread over many lines; and, piped, no
line padded with spaces."""

from __future__ import annotations

import ast
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from stress.analysis.report import render_report
from stress.analysis.summary import summarize
from stress.analysis.table import LABEL_LINES, render_summary
from stress.analysis.verdicts import Verdict
from tests.conftest import REPO, on_a_terminal, run_cli

# pairwise over six factors: labels of ~100 characters; perturbed outputs on the Module API
# make its variants INCONSISTENT, the longest verdict word a clean run can show beside ok
SCENARIO = """\
name: widths
model: tiny
iterations: 3
strategy: pairwise
matrix:
  api: [session, module]
  num_thread: [1, 2]
  precision: [normal, low]
  memory_mode: [normal, low]
  malloc_perturb: [0, 165]
  ballast_mib: [0, 64]
"""
WIDTHS = (80, 90, 100, 120, 150, 200)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("widths")
    (directory / "widths.yaml").write_text(SCENARIO)
    out = directory / "run"
    run_cli("run", str(directory / "widths.yaml"), "--out", str(out), fault="perturb@1+?api=module")
    return out


@pytest.fixture(scope="module")
def summary(run_dir):
    return summarize(run_dir)


def rendered(summary, width: int, terminal: bool = True) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=terminal)
    render_summary(summary, console)
    return console.file.getvalue()


@pytest.mark.integration
@pytest.mark.parametrize("width", WIDTHS)
def test_verdict_id_and_variant_are_whole_at_every_width(summary, width):
    text = rendered(summary, width)
    words = set(text.split())
    assert {"INCONSISTENT", "ok"} <= {v.verdict.value for v in summary.variants}
    for variant in summary.variants:
        assert variant.verdict.value in words and variant.variant_id in words
        assert set(variant.label.split()) <= words  # each factor=value whole, never cut
    assert max(len(line) for line in text.splitlines()) <= width


@pytest.mark.integration
@pytest.mark.parametrize("width", WIDTHS)
def test_no_label_takes_more_than_two_lines(summary, width):
    """A variant's block is its first line and the lines under it until the next id: at
    most two of its label, and (stacked) one of its numbers."""
    text = rendered(summary, width)
    ids = {v.variant_id for v in summary.variants}
    lines = text.splitlines()
    legend = next(i for i, line in enumerate(lines) if line.startswith("exact/close"))
    starts = [i for i, line in enumerate(lines[:legend]) if ids & set(line.split())]
    assert len(starts) == len(ids)
    for start, end in zip(starts, [*starts[1:], legend]):
        block = [line for line in lines[start:end] if line.strip()]
        assert len(block) <= LABEL_LINES + 1, "\n".join(block)  # + the stacked counts line


@pytest.mark.integration
def test_wide_terminals_get_the_table_and_narrow_ones_the_stacked_layout(summary):
    assert re.search(r"verdict\s+id\s+scenario\s+iters", rendered(summary, 200))
    narrow = rendered(summary, 80)
    assert re.search(r"verdict\s+id\s+scenario variant\s*\n", narrow)
    assert "iters 3, exact" in narrow


@pytest.mark.integration
@pytest.mark.parametrize("width", (80, 100))
def test_summary_on_a_real_terminal_of_that_width(run_dir, summary, width):
    command = [sys.executable, "-m", "stress", "summary", str(run_dir)]
    screen = on_a_terminal(command, stream="stdout", width=width)
    words = set(screen.split())
    for variant in summary.variants:
        assert variant.verdict.value in words and variant.variant_id in words
        assert set(variant.label.split()) <= words
    assert max(len(line) for line in screen.splitlines()) <= width


@pytest.mark.integration
def test_piped_output_pads_no_line(run_dir):
    done = run_cli("summary", str(run_dir))
    assert done.stdout.count("\n") > 10
    assert [line for line in done.stdout.splitlines() if line.endswith(" ")] == []
    logged = (run_dir / "run.log").read_text().splitlines()
    assert [line for line in logged if line.endswith(" ")] == []


@pytest.mark.integration
@pytest.mark.parametrize("width", (80, 150))
def test_variants_that_never_started_are_counted_on_one_line_not_listed(summary, width):
    first, *rest = summary.variants
    waiting = [not_started(v, Verdict.SKIPPED) for v in rest]
    text = rendered(summary.model_copy(update={"variants": [first, *waiting]}), width)
    assert first.variant_id in text.split()
    said = [line for line in text.splitlines() if "SKIPPED" in line]
    assert said == [
        f"{len(waiting)} variant(s) not started (SKIPPED), not listed: widths {len(waiting)}"
    ]


@pytest.mark.integration
def test_a_run_that_never_started_a_variant_still_says_so(summary):
    waiting = [not_started(v, Verdict.PENDING) for v in summary.variants]
    text = rendered(summary.model_copy(update={"variants": waiting}), 100)
    assert "verdict" not in text.split()  # no empty table
    assert f"{len(waiting)} variant(s) not started (PENDING), not listed: widths" in text


def not_started(variant, verdict: Verdict):
    return variant.model_copy(update={"verdict": verdict, "iterations": 0})


@pytest.mark.integration
def test_brackets_in_names_and_labels_are_printed_as_they_are(summary):
    """A scenario name or factor value that looks like rich markup is text, not a style."""
    first = summary.variants[0].model_copy(update={"scenario": "[red]x", "label": "a=[bold]"})
    odd = summary.model_copy(update={"variants": [first]})
    assert "[red]x" in rendered(odd, 150) and "a=[bold]" in rendered(odd, 150)
    console = Console(file=io.StringIO(), width=150, color_system=None)
    render_report(odd, console)
    assert "[red]x a=[bold]" in console.file.getvalue()


@pytest.mark.integration
def test_the_commands_do_without_pandas_even_where_it_is_installed(run_dir):
    """pyarrow imports pandas on first use where it is installed (0.3-0.4 s a command, and
    another code path than a plain install's); the command keeps it out."""
    pytest.importorskip("pandas")  # the test extra: installed here
    told = "import atexit, sys; atexit.register(lambda: print(sorted(sys.modules)))"
    command = f"{told}; sys.argv = ['mnn-stress', 'summary', {str(run_dir)!r}]; "
    command += "from stress.__main__ import run; run()"
    done = subprocess.run(
        [sys.executable, "-c", command], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = ast.literal_eval(done.stdout.splitlines()[-1])
    assert "pyarrow.lib" in loaded and "pandas" not in loaded
