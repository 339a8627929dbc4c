"""``memcheck=on`` (issue 14): the worker runs under valgrind memcheck with CPython's
allocator off; a deliberately invalid read (a test-only fault) becomes an event with its native
stack, the same worker without the fault reports nothing (the suppressions hide CPython's own
noise, not errors), and a machine without valgrind is refused at validation."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest

from stress.analysis.signatures import frames
from stress.errors import ScenarioError
from stress.memcheck.report import MAX_ERRORS, read_errors
from stress.scenario import load_scenario
from stress.scenario.variants import expand
from tests.conftest import first_worker, read_events, read_iterations, run_cli, start_run

needs_valgrind = pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")


# Both valgrind runs below are started at once and read by their own test: a worker under
# valgrind spends some 20 s of one core starting Python, numpy and MNN (its iterations take
# milliseconds), so the first run's two workers and the second's one share the machine's
# cores instead of leaving one idle for most of the second run. Each run is the one its test
# made before (same scenario, same fault, its own directory).
CHECKED = (
    "name: checked\nmodel: tiny\niterations: 4\ntimeout: 120s\n"
    "matrix:\n  memcheck: [on]\n  num_thread: [1, 2]\n"
)
TWINS = "name: twins\nmodel: tiny\niterations: 4\ntimeout: 120s\nmatrix:\n  memcheck: [off, on]\n"


@pytest.fixture(scope="module")
def valgrind_runs(tmp_path_factory) -> dict[str, Path]:
    """The run directories of ``checked`` (an invalid read in num_thread=2) and ``twins`` (one
    in memcheck=on), run side by side; each must have exited 0."""
    if not shutil.which("valgrind"):
        pytest.skip("valgrind not installed")
    folder = tmp_path_factory.mktemp("valgrind-runs")
    specs = {
        "checked": (CHECKED, "invalid_read@2?num_thread=2"),
        "twins": (TWINS, "invalid_read@2?memcheck=on"),
    }
    started = {}
    try:
        for name, (text, fault) in specs.items():
            path = folder / f"{name}.yaml"
            path.write_text(text)
            started[name] = start_run(path, folder / name, fault=fault)
        for name, run in started.items():
            _, stderr = run.communicate(timeout=300)
            assert run.returncode == 0, f"{name}: exit {run.returncode}\n{stderr}"
    finally:
        for run in started.values():
            if run.poll() is None:
                run.kill()
                run.wait()
    return {name: folder / name for name in specs}


@pytest.mark.integration
@needs_valgrind
def test_an_invalid_read_is_an_event_with_its_native_stack(valgrind_runs):
    out = valgrind_runs["checked"]
    events = read_events(out)
    found = events[events.kind == "memcheck"]
    assert set(found.num_thread) == {2}  # the clean variant, under valgrind too, has none
    (error,) = found.itertuples()
    assert error.message.startswith("InvalidRead: Invalid read of size 8")
    assert "PyBytes_FromStringAndSize" in error.stack  # ctypes.string_at, natively
    assert "free'd" in error.stack  # and where the block was freed
    rows = read_iterations(out)
    assert set(rows.memcheck) == {"on"} and set(rows.status) == {"ok"}
    assert not list((out / "logs").glob("*.memcheck.xml"))  # read, then deleted
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    verdicts = {v["label"]: v["verdict"] for v in summary["variants"]}
    assert verdicts == {"num_thread=1": "ok", "num_thread=2": "MEMCHECK"}
    (signature,) = summary["memcheck_signatures"]
    assert signature["cause"] == "InvalidRead"
    assert signature["frames"][0] == "bytesobject.c:PyBytes_FromStringAndSize"
    assert run_cli("report", str(out), check=False).returncode == 1


def test_without_valgrind_memcheck_is_refused_naming_the_install(scenario_file, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    path = scenario_file("name: checked\nmodel: tiny\nmatrix:\n  memcheck: [off, on]\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.key == "matrix.memcheck"
    assert "valgrind" in caught.value.message
    assert "apt-get install valgrind" in caught.value.fix


XML_HEAD = """<?xml version="1.0"?>
<valgrindoutput>
<error>
  <unique>0x1</unique><kind>InvalidWrite</kind><what>Invalid write of size 4</what>
  <stack><frame><fn>writer</fn><obj>/lib/libMNN.so</obj></frame>
         <frame><fn>caller</fn><file>main.c</file><line>7</line></frame></stack>
  <auxwhat>Address 0x0 is 0 bytes after a block of size 16 alloc'd</auxwhat>
  <stack><frame><fn>malloc</fn><obj>/usr/libexec/valgrind/vgpreload_memcheck.so</obj></frame>
  </stack>
</error>
<error>
  <unique>0x2</unique><kind>Leak_DefinitelyLost</kind>
  <xwhat><text>8 bytes lost</text></xwhat>
</error>
<error>
  <unique>0x3</unique><kind>InvalidRead</kind><what>Invalid read of size 8</what>
"""


def test_an_unfinished_report_keeps_the_errors_written_before_it_stopped(tmp_path):
    """A worker killed under valgrind leaves its XML cut off: the complete errors are read
    (leaks are not: they are measured as memory growth), the cut one is not invented."""
    report = tmp_path / "w0.log.memcheck.xml"
    report.write_text(XML_HEAD)
    errors, more = read_errors(report)
    assert more == 0
    (error,) = errors
    assert (error.kind, error.what, error.count) == ("InvalidWrite", "Invalid write of size 4", 1)
    assert error.stack.splitlines()[:3] == [
        "Invalid write of size 4",
        "  writer (/lib/libMNN.so)",
        "  caller (main.c:7)",
    ]
    assert "\n\nAddress 0x0 is 0 bytes after a block of size 16 alloc'd" in error.stack
    assert read_errors(tmp_path / "missing.xml") == ([], 0)


def _report(errors: str) -> str:
    return f'<?xml version="1.0"?>\n<valgrindoutput>\n{errors}</valgrindoutput>\n'


def _error(unique: int, frames: str = "<frame><fn>f</fn><obj>/lib/libMNN.so</obj></frame>") -> str:
    return (
        f"<error><unique>0x{unique:x}</unique><kind>InvalidRead</kind>"
        f"<what>Invalid read of size 4</what><stack>{frames}</stack></error>\n"
    )


def test_each_error_keeps_its_count_and_more_than_the_limit_are_counted(tmp_path):
    """valgrind reports how often each error occurred (``errorcounts``); past MAX_ERRORS
    distinct errors, the rest are counted, not kept."""
    report = tmp_path / "w0.log.memcheck.xml"
    counts = "<errorcounts><pair><count>7</count><unique>0x1</unique></pair></errorcounts>\n"
    report.write_text(_report(_error(1) + _error(2) + counts))
    errors, more = read_errors(report)
    assert [e.count for e in errors] == [7, 1] and more == 0
    report.write_text(_report("".join(_error(u) for u in range(1, MAX_ERRORS + 2))))
    errors, more = read_errors(report)
    assert (len(errors), more) == (MAX_ERRORS, 1)


def test_a_native_signature_is_the_error_stack_without_valgrind_frames(tmp_path):
    """The frames of a memcheck signature are where the error happened: valgrind's own
    replacements (memmove) are skipped, and the stack where the block was allocated is not
    taken for more of it."""
    report = tmp_path / "w0.log.memcheck.xml"
    stack = (
        "<frame><fn>memmove</fn><obj>/usr/libexec/valgrind/vgpreload_memcheck.so</obj></frame>"
        "<frame><fn>reader</fn><file>conv.cpp</file><line>12</line></frame>"
    )
    report.write_text(
        _report(
            "<error><unique>0x1</unique><kind>InvalidRead</kind><what>Invalid read</what>"
            f"<stack>{stack}</stack><auxwhat>Address 0x0 is inside a block free'd</auxwhat>"
            "<stack><frame><fn>release</fn><file>tensor.cpp</file><line>3</line></frame>"
            "</stack></error>\n"
        )
    )
    (error,) = read_errors(report)[0]
    assert frames(error.stack) == ("conv.cpp:reader",)


@pytest.mark.integration
@needs_valgrind
def test_memcheck_is_blamed_and_its_slowdown_measured_against_the_same_variant_off(
    valgrind_runs,
):
    """memcheck [off, on] with an invalid read only under valgrind: attribution names
    memcheck=on, the on variant's p50 latency is given over its twin's, and the report
    says how many distinct invalid accesses it had."""
    out = valgrind_runs["twins"]
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    variants = {v["label"]: v for v in summary["variants"]}
    assert variants["memcheck=off"]["verdict"] == "ok"
    assert variants["memcheck=on"]["verdict"] == "MEMCHECK"
    assert variants["memcheck=off"]["memcheck_slowdown"] is None
    assert variants["memcheck=on"]["memcheck_slowdown"] > 1
    assert summary["attribution"]["memcheck"]["explanation"] == "memcheck=on"
    report = run_cli("report", str(out), check=False)
    assert "memcheck: 1 distinct invalid access(es)" in report.stdout


def test_memcheck_off_needs_no_valgrind(scenario_file, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    path = scenario_file("name: plain\nmodel: tiny\nmatrix:\n  memcheck: [off]\n")
    (variant,) = expand(load_scenario(path))
    assert variant.params["memcheck"] == "off"


@pytest.mark.integration
@needs_valgrind
def test_the_worker_runs_under_valgrind_with_cpythons_allocator_off(scenario_file, tmp_path):
    """PYTHONMALLOC=malloc: without it CPython's own allocator hands out its blocks, and
    valgrind cannot see a read of a freed one."""
    path = scenario_file("name: checked\nmodel: tiny\nduration: 60s\nmatrix:\n  memcheck: [on]\n")
    coordinator = start_run(path, tmp_path / "run", "--workers", "1", "--no-reference")
    try:
        worker = first_worker(coordinator.pid)
        command, environment = worker.cmdline(), worker.environ()
    finally:
        coordinator.send_signal(signal.SIGTERM)
        coordinator.communicate(timeout=120)
    assert Path(command[0]).name.startswith("valgrind") and "--tool=memcheck" in command
    assert environment.get("PYTHONMALLOC") == "malloc"
