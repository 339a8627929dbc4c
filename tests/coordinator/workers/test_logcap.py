"""Worker logs are capped (issue 15, bounded disk): past ``max_log_mib`` a log keeps its head
and its tail, while its worker goes on writing to it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from stress.coordinator.workers.logcap import cap
from tests.conftest import read_iterations, run_cli

WRITER = """
import sys, time
with open(sys.argv[1], "a") as log:
    print("first line", file=log, flush=True)
    for i in range(int(sys.argv[2])):
        print(f"line {i:07d} " + "x" * 100, file=log, flush=True)
    print("last line", file=log, flush=True)
"""


def test_a_log_written_while_it_is_cut_keeps_its_head_and_tail(tmp_path):
    log = tmp_path / "w0.log"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(log), "200000"])
    cuts = 0
    while writer.poll() is None:
        cuts += cap(log, 256 << 10) > 0
        time.sleep(0.01)
    cuts += cap(log, 256 << 10) > 0
    text = log.read_text()
    assert cuts >= 2
    assert log.stat().st_size <= 256 << 10
    assert text.startswith("first line\n") and text.endswith("last line\n")
    assert "bytes of this log cut to keep it under 262,144]" in text
    # Whole lines only: every line is one the writer wrote, or the marker.
    lines = text.splitlines()
    assert all(
        line in ("first line", "last line", "")
        or line.startswith("[mnn-stress: ")
        or (line.startswith("line ") and len(line) == 113)
        for line in lines
    )


def test_a_log_under_the_cap_is_left_alone(tmp_path):
    log = tmp_path / "w0.log"
    log.write_text("short\n")
    assert cap(log, 1024) == 0 and log.read_text() == "short\n"
    assert cap(tmp_path / "missing.log", 1024) == 0
    assert cap(tmp_path, 1) == 0  # a cut that fails (here: not a file) does not raise


@pytest.mark.integration
def test_a_chatty_workers_log_stays_under_its_cap(scenario_file, tmp_path):
    """64 KiB of output per iteration for 400 iterations (25 MiB) in a 1 MiB log."""
    path = scenario_file("name: chatty\nmodel: tiny\niterations: 400\nmax_log_mib: 1\n")
    run_cli("run", str(path), "--out", str(tmp_path / "run"), fault="chatter@0+")
    (log,) = (tmp_path / "run" / "logs").glob("*.log")
    assert log.stat().st_size <= 1 << 20
    assert "bytes of this log cut" in log.read_text()
    assert len(read_iterations(tmp_path / "run")) == 400
