"""Native stacks (issue 15, crash forensics): a worker that dies by a signal leaves a core that
gdb reads into its event, every thread's backtrace, and the core is deleted; a hung worker is
attached to before its kill; without gdb the event says why there is none. gdb that is slow,
dies, fails or hangs (issue 23: a fake ``gdb`` first on the coordinator's PATH; the workers
still crash and hang for real) never holds up the run, and the event says what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from stress.analysis import signatures
from stress.coordinator.loop import STOP_GRACE_S
from stress.coordinator.workers import forensics
from tests.conftest import REPO, read_events, read_iterations, run_cli, start_run

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
    # two threads of calls: a worker's only threads are its own (numpy's BLAS has none there)
    two_threads = DIES + "matrix:\n  threads: [2]\n"
    crash = _event_of(scenario_file, out, two_threads, "segv@3/0", "crash")
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


cores_here = pytest.mark.skipif(
    "|" in forensics.CORE_PATTERN.read_text() or "/" in forensics.CORE_PATTERN.read_text(),
    reason="the kernel hands core files to a program here",
)

# A gdb that takes its time, dies, fails or never ends (FAKE_GDB=MODE:SECONDS), and notes in
# FAKE_GDB_LOG when it started and ended.
FAKE_GDB = """#!{python}
import json, os, signal, sys, time
mode, _, seconds = os.environ["FAKE_GDB"].partition(":")
def note(what):
    with open(os.environ["FAKE_GDB_LOG"], "a") as log:
        entry = {{what: time.time_ns(), "pid": os.getpid(), "argv": sys.argv}}
        log.write(json.dumps(entry) + "\\n")
note("start")
print("fake gdb: reading symbols", file=sys.stderr, flush=True)
time.sleep(float(seconds or 0))
if mode == "die":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "fail":
    sys.exit("core: file format not recognized")
print("Thread 1 (Thread 0x7f00 (LWP 1)):")
print("#0  0x0000 in fake_frame_of_the_test () at fake.c:1")
note("end")
"""


@pytest.fixture
def fake_gdb(tmp_path, monkeypatch):
    """Put the fake gdb first on PATH; returns a call that sets its mode and reads its log."""
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    (folder / "gdb").write_text(FAKE_GDB.format(python=sys.executable))
    (folder / "gdb").chmod(0o755)
    log = tmp_path / "fake-gdb.log"
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_GDB_LOG", str(log))

    def use(mode: str) -> Path:
        monkeypatch.setenv("FAKE_GDB", mode)
        return log

    return use


def _gdb_log(log: Path) -> dict:
    """Each fake gdb's start and end (ns since the epoch), in one dict per pid."""
    runs: dict = {}
    for line in log.read_text().splitlines():
        entry = json.loads(line)
        runs.setdefault(entry.pop("pid"), {}).update(entry)
    return runs


@pytest.mark.integration
@cores_here
def test_a_slow_gdb_holds_up_neither_the_death_nor_the_replacement(
    scenario_file, tmp_path, fake_gdb
):
    """gdb takes 6 s over the core: the death is counted and the next worker runs its first
    iteration while gdb is still at work; the event, written once gdb is done, has its
    frames and the time the worker died."""
    log = fake_gdb("slow:6")
    out = tmp_path / "run"
    text = "name: slowgdb\nmodel: tiny\niterations: 8\nmax_crashes: 1\n"
    run_cli("run", str(scenario_file(text)), "--out", str(out), "--no-reference", fault="segv@3")
    (gdb,) = _gdb_log(log).values()
    events = read_events(out)
    (crash,) = events[events.kind == "crash"].itertuples()
    assert "fake_frame_of_the_test" in crash.native_stack
    assert crash.ts.value < gdb["end"]  # when the worker died, not when gdb was done
    rows = read_iterations(out)
    replacement = rows[rows.worker_id != crash.worker_id]
    assert sorted(replacement.iteration) == [4, 5, 6, 7]  # 3 was in flight
    assert replacement.ts.min().value < gdb["end"]


@pytest.mark.integration
@cores_here
@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("die:0", "died of SIGKILL after"),
        ("fail:0", "failed: exit status 1 after"),
        ("hang:30", "timed out after 1 s"),
    ],
)
def test_a_gdb_that_fails_is_named_in_the_event_not_a_missing_core(
    scenario_file, tmp_path, fake_gdb, monkeypatch, mode, says
):
    log = fake_gdb(mode)
    monkeypatch.setenv("MNN_STRESS_GDB_TIMEOUT_S", "1")
    out = tmp_path / "run"
    crash = _event_of(scenario_file, out, DIES, "segv@3", "crash")
    assert crash.native_stack.startswith("gdb reading the core file (")
    assert says in crash.native_stack
    assert "no core file was written" not in crash.native_stack
    assert "fake gdb: reading symbols" in crash.native_stack  # the tail of gdb's stderr
    assert not list((out / "cores").rglob("*"))  # the core deleted all the same
    (pid,) = _gdb_log(log)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _crashed_under_slow_gdb(scenario_file, out: Path, log: Path):
    """A run whose first worker crashed and whose gdb is at work for a minute: the
    coordinator, and the pid of that gdb."""
    path = scenario_file("name: stuck\nmodel: tiny\nduration: 60s\nmax_crashes: 5\n")
    coordinator = start_run(path, out, "--no-reference", fault="segv@3")
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text()):
        assert time.monotonic() < deadline, "gdb never started"
        time.sleep(0.05)
    (pid,) = _gdb_log(log)
    return coordinator, pid


@pytest.mark.integration
@cores_here
def test_a_run_stopped_at_once_writes_the_event_and_leaves_no_gdb(
    scenario_file, tmp_path, fake_gdb
):
    log = fake_gdb("hang:60")
    out = tmp_path / "run"
    coordinator, gdb = _crashed_under_slow_gdb(scenario_file, out, log)
    coordinator.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    coordinator.send_signal(signal.SIGTERM)
    coordinator.communicate(timeout=20)  # not the minute gdb would take
    assert not psutil.pid_exists(gdb) or psutil.Process(gdb).status() == psutil.STATUS_ZOMBIE
    events = read_events(out)
    (crash,) = events[events.kind == "crash"].itertuples()
    assert "was stopped after" in crash.native_stack
    assert "the run was stopping" in crash.native_stack


@pytest.mark.integration
@cores_here
def test_ctrl_c_while_the_run_waits_for_gdb_stops_the_wait(scenario_file, tmp_path, fake_gdb):
    """Every variant done, one gdb at work for a minute: Ctrl-C ends the wait within the
    workers' grace. It was ignored (the loop, which starts that grace, had ended): the run
    waited out gdb's whole timeout."""
    log = fake_gdb("hang:60")
    out = tmp_path / "run"
    path = scenario_file("name: waits\nmodel: tiny\niterations: 8\nmax_crashes: 1\n")
    coordinator = start_run(path, out, "--no-reference", fault="segv@3")
    deadline = time.monotonic() + 60
    while "waiting for gdb" not in _text(out / "run.log"):
        assert time.monotonic() < deadline and coordinator.poll() is None
        time.sleep(0.05)
    asked = time.monotonic()
    coordinator.send_signal(signal.SIGINT)
    coordinator.communicate(timeout=60)
    assert time.monotonic() - asked < STOP_GRACE_S + 5
    (gdb,) = _gdb_log(log)
    assert not psutil.pid_exists(gdb) or psutil.Process(gdb).status() == psutil.STATUS_ZOMBIE
    events = read_events(out)
    (crash,) = events[events.kind == "crash"].itertuples()
    assert "the run was stopping" in crash.native_stack


def test_a_killed_coordinator_leaves_no_gdb_behind_and_loses_no_death(
    scenario_file, tmp_path, fake_gdb
):
    """The death's event is written when the worker dies, before gdb is done: a coordinator
    SIGKILLed while gdb reads the core loses the backtrace, never the death; --resume then
    deletes the core nobody will read."""
    log = fake_gdb("hang:60")
    out = tmp_path / "run"
    coordinator, gdb = _crashed_under_slow_gdb(scenario_file, out, log)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.communicate(timeout=10)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(gdb) and psutil.Process(gdb).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "gdb outlived its coordinator"
        time.sleep(0.05)
    events = read_events(out)
    (crash,) = events[events.kind == "crash"].itertuples()
    assert crash.signal == "SIGSEGV"
    assert crash.native_stack.startswith("gdb was reading the core file (")
    assert "coordinator was killed before gdb was done" in crash.native_stack
    (core,) = (out / "cores").glob("*.core")
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    assert summary["variants"][0]["verdict"] == "CRASHED"
    resumed = subprocess.Popen(
        [sys.executable, "-m", "stress", "run", "--resume", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while "left unread" not in _text(out / "run.log"):
            assert time.monotonic() < deadline + 60 and resumed.poll() is None
            time.sleep(0.05)
    finally:
        resumed.send_signal(signal.SIGTERM)
        resumed.wait(timeout=60)
    assert "deleted 1 core file(s) the killed coordinator left unread" in _text(out / "run.log")
    assert not core.exists()


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_crash_storm_reads_a_few_cores_at_a_time_and_drops_the_rest(tmp_path):
    """gdb takes a core's worth of memory and a CPU: at most MAX_READINGS run at once,
    MAX_WAITING wait, and a core beyond those is deleted unread, its event saying why."""
    pending: forensics.Pending[int] = forensics.Pending()
    cores = []
    for k in range(forensics.MAX_READINGS + forensics.MAX_WAITING + 1):
        core = tmp_path / f"w{k}.core"
        core.write_bytes(b"not a core")
        cores.append(core)
        reading = forensics.Reading(f"core {k}", ["--version"], core)
        said = pending.add(k, reading)
        if k < forensics.MAX_READINGS + forensics.MAX_WAITING:
            assert said is None
        else:
            assert said is not None and said.startswith("not read: 10 gdb readings were")
            assert not core.exists()
    assert sum(1 for _, r in pending.items if r.is_started) == forensics.MAX_READINGS
    read = []
    deadline = time.monotonic() + 60
    while pending:
        assert time.monotonic() < deadline
        assert sum(1 for _, r in pending.items if r.is_started) <= forensics.MAX_READINGS
        read += pending.ready()
        time.sleep(0.02)
    assert sorted(k for k, _ in read) == list(range(forensics.MAX_READINGS + forensics.MAX_WAITING))
    assert not any(core.exists() for core in cores)


@pytest.mark.integration
@cores_here
def test_gdb_attached_to_a_hang_holds_up_no_other_worker(scenario_file, tmp_path, fake_gdb):
    """A hung worker is attached to before its kill (its event has gdb's frames and comes
    after gdb is done), while the coordinator goes on recording the other variant: its
    progress is journaled while gdb is attached."""
    log = fake_gdb("slow:4")
    out = tmp_path / "run"
    text = (
        "name: hangs\nmodel: tiny\nduration: 8s\ntimeout: 2s\nmax_crashes: 0\n"
        "matrix:\n  api: [session, module]\n"
    )
    path = scenario_file(text)
    run_cli(
        "run",
        str(path),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-reference",
        fault="hang@3?api=session",
    )
    (gdb,) = _gdb_log(log).values()
    events = read_events(out)
    (hang,) = events[events.kind == "hang"].itertuples()
    assert gdb["argv"][-2:] == ["-p", str(int(hang.pid))]
    assert "fake_frame_of_the_test" in hang.native_stack
    assert hang.ts.value > gdb["end"]  # killed once gdb was done
    other = events.variant_id[events.kind == "hang"].iloc[0]
    lines = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    during = [
        line["completed"]
        for line in lines
        if line.get("variant") not in (None, other)
        and "completed" in line
        and gdb["start"] < line["ts"] * 1e9 < gdb["end"]
    ]
    assert len(during) >= 3 and during == sorted(during) and during[-1] > during[0]


def test_a_death_without_a_core_says_whether_its_signal_leaves_one(tmp_path):
    assert forensics.read_core(tmp_path, sys.executable, "SIGKILL") == (
        "SIGKILL leaves no core file"
    )
    assert forensics.read_core(tmp_path, sys.executable, "SIGSEGV") == forensics.NO_CORE
