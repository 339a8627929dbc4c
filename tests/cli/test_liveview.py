"""The run's progress: the live view on a terminal, the plain line elsewhere and in run.log."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from stress.cli import liveview
from stress.coordinator.plan import VariantState
from stress.records.states import VariantStatus
from stress.scenario.variants import Variant
from tests.conftest import REPO, on_a_terminal, run_cli

DONE = VariantStatus.DONE


def state(scenario: str, completed: int, grades: dict[str, int], **extra) -> VariantState:
    variant = Variant(scenario, f"v-{scenario}-{completed}", {"threads": 1}, "label")
    made = VariantState(variant, None, extra.pop("stop", 100), extra.pop("duration", None))  # type: ignore[arg-type]
    made.completed, made.next_iterations = completed, [completed]
    made.grades.update(grades)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_the_plain_line_counts_outcomes_deaths_rates_memory_and_disk():
    states = [
        state("a", 50, {"exact": 38, "mismatch": 2, "error": 10}, crashes=2, status=DONE),
        state("a", 25, {"exact": 20, "invalid": 5}, rss_bytes=30 << 20),
        state("b", 10, {"exact": 8}, rss_bytes=20 << 20, status=VariantStatus.RUNNING),
    ]
    rates = liveview.Rates()
    liveview.meters([state("a", 0, {}), state("b", 0, {})], 0.0, rates, (None, None))
    m = liveview.meters(states, 10.0, rates, (3 << 20, 16 << 20))
    assert m.rates == {"a": 7.5, "b": 1.0}
    line = liveview.plain_line(states, m)
    graded = "graded: 66 exact, 2 mismatch, 5 invalid, 10 error"  # b's last 2: not yet
    assert f"variants 1/3 finished, 1 running; 85 iterations (8/s; {graded})" in line
    assert "2 worker deaths" in line
    assert "2 workers 50 MiB" in line and "disk 3 MiB of 16 MiB" in line
    # half of the budget used in 10 s (100 % + 25 % + 10 % of 3 variants' iterations)
    assert m.remaining_s == pytest.approx(10.0 * (1 - 1.35 / 3) / (1.35 / 3))
    view = Console(width=120, file=io.StringIO(), record=True)
    view.print(liveview.table(states, m))
    text = view.export_text()
    assert re.search(r"it/s\s+exact\s+mism\s+inval\s+err\s+deaths\n", text)  # no close
    assert re.search(r"a\s+1/2\s+0\s+75\s+8\s+58\s+2\s+5\s+10\s+2\n", text)
    assert re.search(r"b\s+0/1\s+1\s+10\s+1\s+8\s+0\s+0\s+0\s+0\n", text)


def test_a_cluster_run_shows_each_node_in_the_line_and_the_view():
    """Variants running, iterations, rate and deaths per node; nothing of nodes on one machine."""
    running = VariantStatus.RUNNING
    states = [
        state("a", 40, {}, node="vm/aaa", status=running, crashes=1),
        state("a", 20, {}, node="vm/bbb", status=DONE),
        state("b", 30, {}, node="vm/bbb", status=running),
    ]
    rates, by_node = liveview.Rates(), liveview.Rates(key=lambda s: s.node)
    liveview.meters([state("a", 0, {}, node="vm/aaa")], 0.0, rates, (None, None), by_node)
    m = liveview.meters(states, 10.0, rates, (None, None), by_node)
    assert m.node_rates == {"vm/aaa": 4.0, "vm/bbb": 5.0}
    line = liveview.plain_line(states, m)
    assert line.endswith(
        "; vm/aaa: 1 running, 40 iterations (4/s), 1 deaths"
        "; vm/bbb: 1 running, 50 iterations (5/s), 0 deaths"
    )
    view = Console(width=80, file=io.StringIO(), record=True)
    view.print(liveview.table(states, m))
    text = view.export_text()
    assert re.search(r"node\s+running\s+iters\s+it/s\s+deaths\n", text)
    assert re.search(r"vm/aaa\s+1\s+40\s+4\s+1\n", text)
    assert re.search(r"vm/bbb\s+1\s+50\s+5\s+0\n", text)
    alone = [state("a", 40, {}, status=running)]
    assert "node" not in _text(liveview.table(alone, m)) and "vm/" not in liveview.plain_line(
        alone, m
    )


def _text(renderable) -> str:
    view = Console(width=80, file=io.StringIO(), record=True)
    view.print(renderable)
    return view.export_text()


def test_the_first_rate_counts_from_the_start():
    rates = liveview.Rates()
    assert rates.update(2.0, [state("a", 30, {})]) == {"a": 15.0}


def test_remaining_time_is_unknown_until_something_is_done():
    assert liveview.remaining([state("a", 0, {})], 5.0) is None
    timed = state("a", 0, {}, stop=None, duration=20.0, used_s=5.0)
    assert liveview.remaining([timed], 5.0) == pytest.approx(15.0)


def test_a_second_pass_never_turns_the_finished_count_back():
    """Variants run again with more time (adaptive) were 'finished' and then not: 6/10 then
    5/10. The first passes stay counted; the second pass has its own count."""
    done = [state("a", 10, {}, status=VariantStatus.DONE) for _ in range(3)]
    again = state("a", 10, {}, status=VariantStatus.RUNNING, second_pass=True)
    m = liveview.meters([*done, again], 10.0, liveview.Rates(), (None, None))
    line = liveview.plain_line([*done, again], m)
    assert "variants 4/4 finished, second pass 0/1 finished, 1 running" in line


def test_time_left_counts_the_time_held_back_for_the_second_pass():
    """A first pass of 6 s of a 10 s share is 60 % of the variant, not all of it."""
    first = state("a", 0, {}, stop=None, duration=6.0, used_s=6.0, held_back_s=4.0)
    first.status = VariantStatus.DONE
    assert liveview.remaining([first], 6.0) == pytest.approx(4.0)
    first.held_back_s = 0.0  # shared out: what it was not given is not run
    assert liveview.remaining([first], 6.0) == pytest.approx(0.0)


def test_without_a_terminal_the_progress_line_goes_to_stderr_and_run_log(scenario_file, tmp_path):
    path = scenario_file(
        "name: quiet\nmodel: tiny\nduration: 4s\nadaptive: false\nmatrix:\n  api: [session]\n"
    )
    out = tmp_path / "run"
    done = run_cli("run", str(path), "--out", str(out), "--progress-every", "1s")
    pattern = (
        r"variants 0/1 finished, 1 running; [\d,]+ iterations \([\d,]+/s; graded: [\d,]+ exact\)"
    )
    assert len(re.findall(pattern, done.stderr)) >= 2
    assert len(re.findall(pattern, (out / "run.log").read_text())) >= 2
    assert "\x1b[" not in done.stderr  # no escape sequences in a pipe


def test_on_a_terminal_the_view_is_drawn_live_and_the_log_keeps_plain_lines(
    scenario_file, tmp_path
):
    path = scenario_file(
        "name: shown\nmodel: tiny\nduration: 4s\nadaptive: false\nmatrix:\n  api: [module]\n"
    )
    out = tmp_path / "run"
    screen = on_a_terminal(
        [
            sys.executable,
            "-m",
            "stress",
            "run",
            str(path),
            "--out",
            str(out),
            "--progress-every",
            "1s",
        ],
        timeout=120,
    )
    assert re.search(r"scenario\s+variants\s+running\s+iters\s+it/s\s+exact\s+deaths", screen)
    assert liveview.GRADED in screen
    graded = [
        int(n.replace(",", ""))
        for n in re.findall(r"shown\s+0/1\s+1\s+[\d,]+\s+[\d,]+\s+([\d,]+)", screen)
    ]
    assert max(graded) > 0  # exact iterations counted while it ran
    assert re.search(r"shown\s+0/1\s+1\s+[\d,]+", screen)
    assert "coordinator" in screen and "about" in screen
    log = (out / "run.log").read_text()
    assert "variants 0/1 finished, 1 running" in log
    assert "it/s" not in log  # the table itself is for the terminal only


def test_a_terminal_that_hangs_up_mid_run_leaves_the_run_to_its_end(scenario_file, tmp_path):
    """``run ... & disown``, then the terminal closes (SIGHUP not delivered): writes to it
    now fail with EIO, not EPIPE. The run was failed as a bug of ours (exit 1); it goes on
    to its end, and its log keeps the story."""
    path = scenario_file("name: hup\nmodel: tiny\nduration: 5s\nadaptive: false\n")
    out = tmp_path / "run"
    leader, follower = pty.openpty()
    with (tmp_path / "stdout").open("w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "stress", "run", str(path), "--out", str(out)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=follower,
            start_new_session=True,  # its own session: the hang-up sends it no SIGHUP
        )
    os.close(follower)
    assert os.read(leader, 65536)  # it has drawn on the terminal; now the terminal goes
    os.close(leader)
    assert process.wait(timeout=120) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert f"run directory: {out}" in (tmp_path / "stdout").read_text()
    assert "done        hup" in (out / "run.log").read_text()


def test_plain_lines_read_as_a_log(tmp_path: Path):
    """The run.log line is one line: no wrapping, whatever the terminal's width."""
    long = state("a-scenario-with-a-long-name" * 3, 5, {"exact": 5})
    m = liveview.meters([long], 1.0, liveview.Rates(), (None, None))
    assert "\n" not in liveview.plain_line([long], m)
