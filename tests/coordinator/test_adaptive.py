"""Adaptive nights: a first fair pass, then the time left to the variants still uncertain."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from stress.contract.protocol import Status
from stress.coordinator import adaptive
from stress.coordinator.adaptive import allocate, split_first_pass, uncertainty
from stress.coordinator.plan import VariantState
from stress.coordinator.runner import RunHooks, _pass_done
from stress.records.manifest import Manifest, read_manifest
from stress.records.states import VariantStatus
from stress.scenario.variants import Variant
from tests.conftest import run_cli


def state(
    completed: int,
    failed: int = 0,
    crashes: int = 0,
    duration: float | None = 10.0,
    opted_in: bool = True,
) -> VariantState:
    variant = Variant("s", f"v{completed}-{failed}-{crashes}", {"threads": 1}, "label")
    scenario = SimpleNamespace(spec=SimpleNamespace(adaptive=opted_in))
    made = VariantState(variant, scenario, None, duration)  # type: ignore[arg-type]
    made.completed, made.crashes, made.status = completed, crashes, VariantStatus.DONE
    made.outcomes[Status.OK] = completed - failed
    made.outcomes[Status.ERROR] = failed
    return made


def test_what_counts_as_known_and_as_uncertain():
    assert uncertainty(state(0))[0] == 1.0
    assert uncertainty(state(300)) == (0.0, "known clean: 0 of 300 (< 1.00%)")
    weight, why = uncertainty(state(299))
    assert weight > 0 and why.startswith("0 of 299 cannot rule out 1% yet")
    assert uncertainty(state(2000, failed=2000))[0] == 0.0  # fails every time: known
    weight, why = uncertainty(state(1000, failed=3))
    assert weight > 0 and why.startswith("imprecise: 3 of 1,000 failed (0.30%")
    assert uncertainty(state(100_000, failed=50_000))[1].startswith("known: 50,000 of 100,000")
    weight, why = uncertainty(state(200, crashes=2))  # deaths are failures too
    assert weight > 0 and "2 of 202 failed" in why


def test_failures_are_the_live_grades_that_fail_once_there_are_any():
    """A NaN one run in ten is a failure the adaptive pass sees (graded as rows are written);
    before any grade (or without them), what MNN's calls did is all there is."""
    graded = state(100, failed=0, crashes=1)
    graded.grades.update({"exact": 80, "close": 5, "ungraded": 3, "non_finite": 7})
    graded.grades.update({"mismatch": 2, "invalid": 1, "error": 2})
    assert adaptive.failures(graded) == (7 + 2 + 1 + 2 + 1, 100 + 1)
    assert adaptive.failures(state(100, failed=4, crashes=1)) == (5, 101)


def test_the_first_pass_keeps_half_of_each_opted_in_share():
    shares = [state(0, duration=10.0), state(0, duration=1.5), state(0, opted_in=False)]
    shares.append(state(0, duration=None))  # an iteration budget: nothing to pool
    assert split_first_pass(shares) == pytest.approx(5.0)
    assert [s.duration_s for s in shares] == [5.0, 1.5, 10.0, None]  # 0.75 s < MIN_SHARE_S


def test_the_uncertain_get_the_pool_by_uncertainty_within_the_wall_clock():
    clean, failing = state(5000), state(5000, failed=5000)
    vague, vaguer = state(1000, failed=3), state(150)
    extras = {
        e.state.variant.variant_id: e.seconds
        for e in allocate([clean, failing, vague, vaguer], pool=40.0, parallelism=1)
    }
    assert extras[clean.variant.variant_id] == extras[failing.variant.variant_id] == 0.0
    assert extras[vague.variant.variant_id] + extras[vaguer.variant.variant_id] == pytest.approx(40)
    assert extras[vaguer.variant.variant_id] > extras[vague.variant.variant_id]  # less known
    # two at a time: no variant may run past pool / 2, the rest goes to the known ones
    capped = {
        e.state.variant.variant_id: e.seconds
        for e in allocate([clean, failing, vague], pool=40.0, parallelism=2)
    }
    assert capped[vague.variant.variant_id] == pytest.approx(20.0)
    assert capped[clean.variant.variant_id] == capped[failing.variant.variant_id] == 10.0


def test_shares_below_the_least_worth_a_worker_are_dropped_and_others_are_left_out():
    ignored = state(10, opted_in=False)
    quarantined = state(10)
    quarantined.status = VariantStatus.QUARANTINED
    extras = allocate(
        [ignored, quarantined, state(100)], pool=adaptive.MIN_EXTRA_S / 2, parallelism=1
    )
    assert [e.seconds for e in extras] == [0.0]  # only the one eligible variant, and too little


def test_variants_with_an_iteration_budget_get_none_of_the_pool():
    """A night mixing a scenario of ``iterations:`` with one of ``duration:``: the pool is the
    timed variants' time. Given to a variant that had run its iterations, it started a worker
    (a 256 MiB model loaded again) that ran nothing, and the timed variant still uncertain
    got nothing."""
    counted, timed = state(3, duration=None), state(150)
    extras = allocate([counted, timed], pool=10.0, parallelism=1)
    assert [(e.state, e.seconds) for e in extras] == [(timed, pytest.approx(10.0))]
    assert counted.duration_s is None


def test_water_filling_never_exceeds_the_cap():
    given = adaptive._fill({1: 10.0, 2: 1.0, 3: 1.0}, pool=12.0, cap=5.0)
    assert given[1] == 5.0 and given[2] == given[3] == pytest.approx(3.5)
    assert adaptive._fill({1: 1.0}, pool=12.0, cap=5.0) == {1: 5.0}  # the rest is left


def test_a_night_gives_its_second_pass_to_the_variant_that_failed_once(scenario_file, tmp_path):
    """One NaN in the Module API's variant (graded live against the reference): its rate is
    imprecise, so it gets the pool; the Session API's, clean over thousands of iterations,
    gets nothing more."""
    path = scenario_file(
        "name: night\nmodel: tiny\ntimeout: 10s\nmatrix:\n  api: [session, module]\n"
    )
    out = tmp_path / "run"
    run_cli(
        "run",
        str(path),
        "--out",
        str(out),
        "--duration",
        "8s",
        "--workers",
        "1",
        fault="nan@5?api=module",
    )
    info = json.loads((out / "manifest.json").read_text())
    pool = info["adaptive"]["pool_s"]
    assert pool == pytest.approx(4.0)
    given = info["adaptive"]["variants"]
    by_api = {v["params"]["api"]: (vid, v) for vid, v in info["variants"].items()}
    session_id, session = by_api["session"]
    module_id, module = by_api["module"]
    assert given[session_id]["extra_s"] == 0.0 and given[session_id]["why"].startswith(
        "known clean"
    )
    assert given[module_id]["extra_s"] == pytest.approx(pool)
    assert given[module_id]["why"].startswith("imprecise: 1 of ")
    assert session["duration_s"] == pytest.approx(2.0) and module["duration_s"] == pytest.approx(
        6.0
    )
    assert module["used_s"] == pytest.approx(6.0, abs=0.5)
    log = (out / "run.log").read_text()
    assert f"+{pool:.1f} s {module_id} api=module: imprecise: 1 of" in log
    assert "adaptive: no second pass for the other variants (1 known clean)" in log
    assert f"of the {pool:,.0f} s of iterations held back for a second pass, " in log
    # a resumed run does not share the pool out a second time...
    uncertain = state(10)
    assert _pass_done(Manifest(out, read_manifest(out)), RunHooks())([uncertain]) == []
    # ...but one resumed before its second pass does
    data = read_manifest(out)
    data.adaptive.allocated_at = None  # as if the run was killed before its second pass
    assert _pass_done(Manifest(out, data), RunHooks())([uncertain]) == [uncertain]
    assert uncertain.duration_s == pytest.approx(10.0 + pool)


def test_no_adaptive_keeps_the_fair_shares(scenario_file, tmp_path):
    path = scenario_file("name: fair\nmodel: tiny\nmatrix:\n  api: [session, module]\n")
    out = tmp_path / "run"
    run_cli(
        "run",
        str(path),
        "--out",
        str(out),
        "--duration",
        "4s",
        "--workers",
        "1",
        "--no-reference",
        "--no-adaptive",
    )
    info = json.loads((out / "manifest.json").read_text())
    assert info["adaptive"] == {}
    assert [v["duration_s"] for v in info["variants"].values()] == [2.0, 2.0]
