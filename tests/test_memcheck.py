"""``memcheck=on`` (issue 14): the worker runs under valgrind memcheck with CPython's
allocator off; a deliberately invalid read (a test-only fault) becomes an event with its native
stack, the same worker without the fault reports nothing (the suppressions hide CPython's own
noise, not errors), and a machine without valgrind is refused at validation."""

from __future__ import annotations

import json
import shutil

import pytest

from stress.errors import ScenarioError
from stress.memcheck.report import read_errors
from stress.scenario import load_scenario

from .conftest import read_events, read_iterations, run_cli

needs_valgrind = pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind not installed")


@pytest.mark.integration
@needs_valgrind
def test_an_invalid_read_is_an_event_with_its_native_stack(scenario_file, tmp_path):
    path = scenario_file(
        "name: checked\nmodel: tiny\niterations: 4\ntimeout: 120s\n"
        "matrix:\n  memcheck: [on]\n  num_thread: [1, 2]\n"
    )
    out = tmp_path / "run"
    run_cli("run", str(path), "--out", str(out), fault="invalid_read@2?num_thread=2")
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
