"""Rates with confidence intervals and crash signatures: the numbers a morning reader trusts."""

from __future__ import annotations

import json

import pytest

from stress.analysis.rates import describe, rate, rule_of_three, wilson
from stress.analysis.signatures import cause, frames
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("count", "n", "low", "high"),
    [  # published Wilson 95 % intervals
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (1, 1000, 0.000177, 0.005648),
    ],
)
def test_wilson_interval(count, n, low, high):
    got = wilson(count, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_rates_and_what_nothing_rules_out():
    assert rate(0, 0).rate is None
    assert rate(3, 4).rate == 0.75
    assert rule_of_three(1000) == pytest.approx(0.003) and rule_of_three(0) is None
    assert describe(0, 1000) == "0 of 1,000 (< 0.3 % at 95 %)"
    assert describe(5, 10) == "5 of 10 (50 %, 95 % CI 24 %–76 %)"
    with pytest.raises(ValueError):
        wilson(3, 2)


DUMP = """Fatal Python error: Segmentation fault

Current thread 0x00007f771c297b80 (most recent call first):
  File "/work/stress/worker/faults.py", line 145 in crash
  File "/usr/lib/python3.11/contextlib.py", line 81 in inner
  File "/work/stress/worker/faults.py", line 97 in before
  File "/work/stress/worker/main.py", line 199 in run
  File "/work/stress/worker/main.py", line 91 in run
"""
TRACEBACK = """Traceback (most recent call last):
  File "/work/stress/worker/main.py", line 311, in main
  File "/work/stress/worker/drivers/module.py", line 40, in load_module
  File "/work/stress/worker/drivers/__init__.py", line 69, in calling_mnn
MNNError: SystemError: boom
"""


def test_a_signature_is_the_innermost_frames_without_line_numbers_or_plumbing():
    assert frames(DUMP) == ("faults.py:crash", "faults.py:before", "main.py:run")
    assert frames(DUMP.replace("line 145", "line 146")) == frames(DUMP)
    assert frames(TRACEBACK) == ("__init__.py:calling_mnn", "module.py:load_module", "main.py:main")
    assert frames(None) == () and frames("no stack here") == ()


def test_the_cause_is_the_signal_or_the_exception_behind_our_wrapper():
    assert cause("crash", "SIGSEGV", "worker died of SIGSEGV") == "SIGSEGV"
    assert cause("exception", None, "MNNError: SystemError: <built-in> failed") == "SystemError"
    assert cause("exit", None, "worker exited with code 9") == "exit"


@pytest.mark.integration
def test_a_night_of_crashes_shows_its_causes(scenario_file, tmp_path):
    """Real workers die of two causes over two variants: two signatures, counted, with the
    factor values they occurred under; every variant's death rate has an interval."""
    text = """
    name: night
    model: tiny
    iterations: 8
    max_crashes: 4
    matrix:
      api: [session, module]
    """
    out = tmp_path / "run"
    run_cli("run", str(scenario_file(text)), "--out", str(out), fault="segv@2,abort@4", check=False)
    summary = json.loads(run_cli("summary", str(out), "--json").stdout)
    by_cause = {s["cause"]: s for s in summary["crash_signatures"]}
    assert set(by_cause) == {"SIGSEGV", "SIGABRT"}
    for group in by_cause.values():
        assert group["count"] == 2 and len(group["variants"]) == 2
        assert group["factors"]["api"] == ["module", "session"]
        assert any(frame.startswith("faults.py:") for frame in group["frames"])
        assert group["first"] <= group["last"]
    for variant in summary["variants"]:
        death = variant["rates"]["death"]
        assert (death["count"], death["n"]) == (2, 6 + 2)  # iterations 2 and 4 lost
        assert death["low"] < death["rate"] < death["high"]
        assert variant["clean_bound"] is None
    shown = run_cli("summary", str(out)).stdout
    assert "crash signatures:" in shown and "SIGABRT" in shown


def test_variant_rates_say_what_a_clean_variant_rules_out():
    from stress.analysis.grading import GRADES
    from stress.analysis.rates import variant_rates

    grades = dict.fromkeys(GRADES, 0) | {"exact": 600}
    clean = {"iterations": 600, "grades": grades}
    assert variant_rates(clean, deaths=0, clean=True)["clean_bound"] == pytest.approx(0.005)
    assert variant_rates(clean, deaths=0, clean=False)["clean_bound"] is None
    for outcome in ("mismatch", "invalid", "error", "non_finite"):
        found = variant_rates({**clean, "grades": grades | {outcome: 6}}, deaths=0, clean=False)
        assert found["rates"][outcome]["rate"] == pytest.approx(0.01)
    assert variant_rates(clean, deaths=1, clean=False)["rates"]["death"]["n"] == 601
