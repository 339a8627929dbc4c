"""Native stacks (issue 15, crash forensics): a worker that dies by a signal leaves a core that
gdb reads into its event, every thread's backtrace, and the core is deleted; a hung worker is
attached to before its kill; without gdb the event says why there is none."""

from __future__ import annotations

import json

import pytest

from stress import forensics
from stress.analysis import signatures

from .conftest import read_events, run_cli

needs_gdb = pytest.mark.skipif(
    forensics.unavailable() is not None, reason=str(forensics.unavailable())
)


def _event_of(scenario_file, out, scenario: str, fault: str, kind: str):
    """The one event of ``kind`` in a run of ``scenario`` with the test fault ``fault``."""
    path = scenario_file(scenario)
    run_cli("run", str(path), "--out", str(out), "--no-reference", fault=fault)
    events = read_events(out)
    (event,) = events[events.kind == kind].itertuples()
    return event


DIES = "name: dies\nmodel: tiny\niterations: 10\nmax_crashes: 0\n"


@pytest.mark.integration
@needs_gdb
def test_a_death_by_a_signal_carries_every_threads_native_backtrace(scenario_file, tmp_path):
    out = tmp_path / "run"
    crash = _event_of(scenario_file, out, DIES, "segv@3", "crash")
    assert crash.signal == "SIGSEGV"
    assert "Thread 1 " in crash.native_stack and "Thread 2 " in crash.native_stack
    assert "string_at" in crash.native_stack  # ctypes.string_at(0), the invalid read itself
    assert "faulthandler" in crash.stack or "Fatal Python error" in crash.stack  # and Python's
    assert not list((out / "cores").rglob("*"))  # read, then deleted
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    (signature,) = summary["crash_signatures"]
    assert "_ctypes.c:string_at" in signature["native_frames"]  # where the signal struck
    assert not any("pthread_kill" in f for f in signature["native_frames"])  # not the handler


GDB_CRASH = """Thread 2 (Thread 0x7f (LWP 2)):
#0  __futex_abstimed_wait_common64 (private=0) at ./nptl/futex-internal.c:57
Thread 1 (Thread 0x7e (LWP 1)):
#0  __pthread_kill_implementation (threadid=<optimized out>) at ./nptl/pthread_kill.c:44
#1  0x00007fe4f8c59fb2 in __GI_raise (sig=11) at ../sysdeps/posix/raise.c:26
#2  <signal handler called>
#3  0x00007f00 in MNN::Tensor::host (this=0x0) at /src/MNN/Tensor.cpp:120
#4  MNN::Tensor::host (this=0x0) at /src/MNN/Tensor.cpp:120
#5  0x00007f01 in ?? () from /usr/lib/libMNN.so
#6  0x00007f02 in PyMNNTensor_getData (self=0x1) at pymnn/src/Tensor.h:40
"""


def test_native_frames_are_where_the_signal_struck_innermost_first_without_repeats():
    frames = signatures.native_frames(GDB_CRASH)
    assert frames == (
        "Tensor.cpp:MNN::Tensor::host",
        "libMNN.so:??",
        "Tensor.h:PyMNNTensor_getData",
    )
    assert signatures.native_frames("gdb is not installed (apt-get install gdb)") == ()
    assert signatures.native_frames(GDB_CRASH.split("#2")[0]) == ()  # a hang: no signal frame


@pytest.mark.integration
@needs_gdb
def test_a_hang_carries_the_native_backtrace_taken_before_the_kill(scenario_file, tmp_path):
    hangs = "name: hangs\nmodel: tiny\niterations: 5\ntimeout: 2s\nmax_crashes: 0\n"
    hang = _event_of(scenario_file, tmp_path / "run", hangs, "hang@2", "hang")
    assert hang.signal == "SIGKILL"
    assert "Thread 1 " in hang.native_stack
    assert "sleep" in hang.native_stack or "select" in hang.native_stack  # time.sleep


@pytest.mark.integration
def test_without_gdb_a_crash_says_why_it_has_no_native_stack(scenario_file, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    out = tmp_path / "run"
    crash = _event_of(scenario_file, out, DIES, "segv@3", "crash")
    assert crash.native_stack.startswith("gdb is not installed (apt-get install gdb)")
    assert not (out / "cores").exists()
