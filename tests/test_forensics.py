"""Native stacks (issue 15, crash forensics): a worker that dies by a signal leaves a core that
gdb reads into its event, every thread's backtrace, and the core is deleted; a hung worker is
attached to before its kill; without gdb the event says why there is none."""

from __future__ import annotations

import pytest

from stress import forensics

from .conftest import read_events, run_cli

pytestmark = pytest.mark.integration

needs_gdb = pytest.mark.skipif(
    forensics.unavailable() is not None, reason=str(forensics.unavailable())
)


@needs_gdb
def test_a_death_by_a_signal_carries_every_threads_native_backtrace(scenario_file, tmp_path):
    path = scenario_file("name: dies\nmodel: tiny\niterations: 10\nmax_crashes: 0\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference", fault="segv@3")
    events = read_events(out)
    (crash,) = events[events.kind == "crash"].itertuples()
    assert crash.signal == "SIGSEGV"
    assert "Thread 1 " in crash.native_stack and "Thread 2 " in crash.native_stack
    assert "string_at" in crash.native_stack  # ctypes.string_at(0), the invalid read itself
    assert "faulthandler" in crash.stack or "Fatal Python error" in crash.stack  # and Python's
    assert not list((out / "cores").rglob("*"))  # read, then deleted


@needs_gdb
def test_a_hang_carries_the_native_backtrace_taken_before_the_kill(scenario_file, tmp_path):
    path = scenario_file("name: hangs\nmodel: tiny\niterations: 5\ntimeout: 2s\nmax_crashes: 0\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference", fault="hang@2")
    events = read_events(out)
    (hang,) = events[events.kind == "hang"].itertuples()
    assert hang.signal == "SIGKILL"
    assert "Thread 1 " in hang.native_stack
    assert "sleep" in hang.native_stack or "select" in hang.native_stack  # time.sleep


def test_without_gdb_a_crash_says_why_it_has_no_native_stack(scenario_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    path = scenario_file("name: dies\nmodel: tiny\niterations: 10\nmax_crashes: 0\n")
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), "--no-reference", fault="segv@3")
    events = read_events(out)
    (crash,) = events[events.kind == "crash"].itertuples()
    assert crash.native_stack.startswith("gdb is not installed (apt-get install gdb)")
    assert not (out / "cores").exists()
