"""Memory the worker cannot have (issue 14): an address-space cap set after set-up
(``rlimit_as_headroom_mib``) or before the engine is built (``rlimit_as_from: setup``, issue
23), and a cgroup limit (``cgroup_memory_max_mib``), each really applied to a real worker, and
what MNN does then recorded as findings, never as errors of the harness."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from stress.coordinator.workers import cgroups
from stress.errors import RunFailure, ScenarioError
from stress.scenario import load_scenario
from stress.scenario.variants import expand
from tests.conftest import (
    REPO,
    dies_within,
    first_worker,
    read_events,
    read_iterations,
    run_cli,
    start_run,
    wait_for_iterations,
    workers_of,
)

MIB = 1 << 20


def _stop(coordinator) -> None:
    coordinator.send_signal(signal.SIGTERM)
    coordinator.communicate(timeout=60)


def _hello_seen(worker: psutil.Process, timeout: float = 60) -> None:
    """Wait until the worker capped itself (the cap comes right before its hello)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.rlimit(psutil.RLIMIT_AS)[0] != resource.RLIM_INFINITY:
            return
        time.sleep(0.02)
    raise AssertionError("the worker never capped its address space")


@pytest.mark.integration
def test_the_cap_is_the_address_space_after_setup_plus_the_headroom(scenario_file, tmp_path):
    path = scenario_file(
        "name: capped\nmodel: tiny\nduration: 60s\nmatrix:\n  rlimit_as_headroom_mib: [256]\n"
    )
    coordinator = start_run(path, tmp_path / "run", "--workers", "1", "--no-reference")
    worker = first_worker(coordinator.pid)
    _hello_seen(worker)
    soft, hard = worker.rlimit(psutil.RLIMIT_AS)
    mapped = worker.memory_info().vms
    _stop(coordinator)
    assert hard == resource.RLIM_INFINITY  # only the soft limit is lowered
    # The cap sits 256 MiB above what the worker had mapped when it set it; the worker maps
    # a little more while running (its loop's buffers), never a whole 256 MiB more, and may
    # give a few pages back (a capped worker's malloc returns what it frees: MALLOC_AT_THE_CAP).
    assert 200 * MIB < soft - mapped <= 257 * MIB
    assert set(read_iterations(tmp_path / "run").rlimit_as_headroom_mib) == {256}


@pytest.mark.integration
def test_without_the_key_the_worker_has_no_cap(scenario_file, tmp_path):
    path = scenario_file("name: uncapped\nmodel: tiny\nduration: 60s\n")
    coordinator = start_run(path, tmp_path / "run", "--workers", "1", "--no-reference")
    worker = first_worker(coordinator.pid)
    time.sleep(3)  # well past its set-up
    limit = worker.rlimit(psutil.RLIMIT_AS)
    _stop(coordinator)
    assert limit[0] == resource.RLIM_INFINITY
    assert read_iterations(tmp_path / "run").rlimit_as_headroom_mib.isna().all()


@pytest.mark.integration
def test_allocation_failures_in_mnn_are_findings_not_harness_errors(scenario_file, tmp_path):
    """No headroom: every allocation MNN makes per iteration fails. Both APIs report it as
    an error per iteration (MNN 3.6.1 raises a TypeError or SystemError for it); nothing is
    blamed on the harness, and the report exits with findings."""
    path = scenario_file(
        "name: starved\nmodel: three_input\niterations: 10\n"
        "matrix:\n  api: [session, module]\n  rlimit_as_headroom_mib: [0]\n"
    )
    run_cli("run", str(path), "--out", str(tmp_path / "run"), "--no-reference")
    rows = read_iterations(tmp_path / "run")
    events = read_events(tmp_path / "run")
    assert events is None or "harness" not in set(events.kind)
    per_api = rows.groupby("api").status.apply(set).to_dict()
    assert per_api == {"session": {"error"}, "module": {"error"}}
    assert rows.error.notna().all()
    summary = json.loads(run_cli("summary", str(tmp_path / "run"), "--json").stdout)
    assert {v["verdict"] for v in summary["variants"]} == {"FAILED"}
    report = run_cli("report", str(tmp_path / "run"), check=False)
    assert report.returncode == 1


@pytest.mark.integration
def test_a_cap_bites_in_a_worker_of_several_threads_too(scenario_file, tmp_path):
    """Two threads, no headroom, both modes: every iteration's allocations fail as with one
    thread. glibc gave each thread its own arena, 64 MiB of address space reserved before
    the cap and used below it unseen: every variant ran clean, a false 'ok' for MNN."""
    path = scenario_file(
        "name: starved2\nmodel: three_input\niterations: 5\nmax_crashes: 0\n"
        "matrix:\n  threads: [2]\n  rlimit_as_headroom_mib: [0]\n"
        "  rlimit_as_from: [loop, setup]\n"
    )
    run_cli("run", str(path), "--out", str(tmp_path / "run"), "--no-reference", check=False)
    summary = json.loads(run_cli("summary", str(tmp_path / "run"), "--json").stdout)
    verdicts = {v["label"]: v["verdict"] for v in summary["variants"]}
    assert "ok" not in verdicts.values() and "HARNESS_ERROR" not in verdicts.values(), verdicts


FINDINGS = {"exception", "memory", "crash"}  # how a worker may die of the cap: MNN's, not ours


def _by_mode(frame, *keys: str) -> dict:
    return {tuple(row[k] for k in keys): row for _, row in frame.iterrows()}


@pytest.mark.integration
def test_a_cap_lowered_before_the_build_fails_the_set_up_as_findings(scenario_file, tmp_path):
    """three_input, ``rlimit_as_from: setup``: with no headroom MNN cannot even load the model
    (the Session API says "Invalid model file"), a death at set-up blamed on MNN, never on
    the harness, where ``loop`` gives error rows as before; with 4 MiB createSession fails
    silently and every runSession returns 3 (the MNN_NOTES case: ``invalid`` rows)."""
    path = scenario_file(
        "name: early\nmodel: three_input\niterations: 5\nmax_crashes: 0\n"
        "matrix:\n  api: [session, module]\n  rlimit_as_from: [loop, setup]\n"
        "  rlimit_as_headroom_mib: [0, 4]\n"
        "exclude: [{api: module, rlimit_as_headroom_mib: 4}]\n"
    )
    run_cli("run", str(path), "--out", str(tmp_path / "run"), "--no-reference", check=False)
    rows = read_iterations(tmp_path / "run")
    events = read_events(tmp_path / "run")
    assert "harness" not in set(events.kind)
    statuses = rows.groupby(["api", "rlimit_as_from", "rlimit_as_headroom_mib"]).status
    assert statuses.apply(set).to_dict() == {
        ("session", "loop", 0): {"error"},
        ("module", "loop", 0): {"error"},
        ("session", "loop", 4): {"ok"},
        ("session", "setup", 4): {"invalid"},
    }
    assert set(rows[rows.status == "invalid"].rc) == {3}
    deaths = events[events.kind != "quarantine"]
    at_setup = _by_mode(deaths, "api", "rlimit_as_from", "rlimit_as_headroom_mib")
    assert set(at_setup) == {("session", "setup", 0), ("module", "setup", 0)}
    for death in at_setup.values():
        assert death.kind in FINDINGS
        assert pd.isna(death.mnn_version)  # before its hello: while it was setting up
    assert "Invalid model file" in at_setup["session", "setup", 0].message


@pytest.mark.integration
def test_mnn_threads_that_cannot_start_under_a_set_up_cap_are_a_crash(scenario_file, tmp_path):
    """tiny with num_thread 4 and no headroom: once set up it runs (``loop``); capped before
    the build, MNN cannot start its thread pool and aborts inside createSession: a crash at
    set-up, the variant quarantined, nothing blamed on the harness."""
    path = scenario_file(
        "name: pool\nmodel: tiny\niterations: 5\nmax_crashes: 0\n"
        "matrix:\n  num_thread: [4]\n  rlimit_as_from: [loop, setup]\n"
        "  rlimit_as_headroom_mib: [0]\n"
    )
    run_cli("run", str(path), "--out", str(tmp_path / "run"), "--no-reference", check=False)
    rows = read_iterations(tmp_path / "run")
    events = read_events(tmp_path / "run")
    assert rows.groupby("rlimit_as_from").status.apply(list).to_dict() == {"loop": ["ok"] * 5}
    (crash,) = events[events.kind == "crash"].itertuples()
    assert (crash.rlimit_as_from, crash.signal) == ("setup", "SIGABRT")
    assert pd.isna(crash.mnn_version)
    assert set(events.kind) == {"crash", "quarantine"}


def test_a_cap_at_set_up_without_a_headroom_is_refused_saying_what_to_give(scenario_file):
    path = scenario_file("name: nocap\nmodel: tiny\nmatrix:\n  rlimit_as_from: [setup]\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    error = caught.value
    assert error.key == "matrix.rlimit_as_from"
    assert "give rlimit_as_headroom_mib a number of MiB" in error.message
    assert "exclude: [{rlimit_as_from: setup, rlimit_as_headroom_mib: off}]" in error.fix


def _cgroup_of(pid: int) -> Path:
    hierarchy, _ = cgroups.find()
    assert hierarchy is not None
    controller = "" if hierarchy.version == 2 else "memory"
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, where = line.split(":", 2)
        if controller in (names.split(",") if names else [""]):
            return where
    raise AssertionError(f"pid {pid} is in no {controller or 'v2'} cgroup")


def _group_of(pid: int, timeout: float = 30) -> Path:
    """The worker's own memory group, once the coordinator has moved it there."""
    hierarchy, _ = cgroups.find()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        name = Path(_cgroup_of(pid)).name
        if name.startswith(cgroups.PREFIX):
            return hierarchy.parent / name
        time.sleep(0.02)
    raise AssertionError(f"pid {pid} was not moved into a group of its own")


def _confined(scenario_file, out: Path):
    """A run whose worker has a 300 MiB memory group: the coordinator and that group."""
    path = scenario_file(
        "name: confined\nmodel: tiny\nduration: 60s\nmatrix:\n  cgroup_memory_max_mib: [300]\n"
    )
    coordinator = start_run(path, out, "--workers", "1", "--no-reference")
    return coordinator, _group_of(first_worker(coordinator.pid).pid)


needs_cgroup = pytest.mark.skipif(
    cgroups.unavailable() is not None, reason=f"no memory cgroup here: {cgroups.unavailable()}"
)


@pytest.mark.integration
@needs_cgroup
def test_the_worker_runs_in_a_memory_cgroup_with_the_limit(scenario_file, tmp_path):
    coordinator, group = _confined(scenario_file, tmp_path / "run")
    hierarchy, _ = cgroups.find()
    limit = int((group / hierarchy.limit_file).read_text())
    assert group.name.startswith(f"mnn-stress-{coordinator.pid}-")
    wait_for_iterations(tmp_path / "run", 3)
    _stop(coordinator)
    assert limit == 300 * MIB
    assert not group.exists()  # removed once its worker was reaped
    assert set(read_iterations(tmp_path / "run").cgroup_memory_max_mib) == {300}


@pytest.mark.integration
@needs_cgroup
def test_the_oom_killer_ends_a_worker_over_its_cgroup_limit_as_a_memory_event(
    scenario_file, tmp_path
):
    """A 256 MiB ballast in a 128 MiB cgroup: the kernel kills the worker (SIGKILL), and the
    event says it was the OOM killer at the cgroup limit, a death counted against the
    variant; no group is left behind."""
    path = scenario_file(
        "name: oom\nmodel: tiny\niterations: 5\nmax_crashes: 1\n"
        "matrix:\n  cgroup_memory_max_mib: [128]\n  ballast_mib: [256]\n"
    )
    done = run_cli("run", str(path), "--out", str(tmp_path / "run"), "--no-reference", check=False)
    assert done.returncode == RunFailure.exit_code  # not one iteration in the whole run
    events = read_events(tmp_path / "run")
    deaths = events[events.kind == "memory"]
    assert len(deaths) == 2  # the first worker and the one after it; then quarantined
    assert set(deaths.signal) == {"SIGKILL"}
    assert all("OOM killer" in m for m in deaths.message)
    hierarchy, _ = cgroups.find()
    assert not list(hierarchy.parent.glob("mnn-stress-*"))


def test_a_machine_without_a_memory_cgroup_is_refused_at_validation(scenario_file, monkeypatch):
    monkeypatch.setattr(cgroups, "find", lambda: (None, "no cgroup filesystem is mounted"))
    path = scenario_file(
        "name: confined\nmodel: tiny\nmatrix:\n  cgroup_memory_max_mib: [off, 256]\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    error = caught.value
    assert error.key == "matrix.cgroup_memory_max_mib"
    assert "no cgroup filesystem is mounted" in error.message
    assert "cgroup_memory_max_mib off" in error.fix


def test_off_is_a_value_and_the_default(scenario_file):
    path = scenario_file("name: offs\nmodel: tiny\nmatrix:\n  rlimit_as_headroom_mib: [off, 32]\n")
    variants = expand(load_scenario(path))
    assert [v.params["rlimit_as_headroom_mib"] for v in variants] == [None, 32]
    assert [v.label for v in variants] == [
        "rlimit_as_headroom_mib=off",
        "rlimit_as_headroom_mib=32",
    ]
    for bad, why in (("[-1]", "below the minimum"), ("[on]", "off"), ("[1.5]", "int")):
        wrong = scenario_file(
            f"name: bad\nmodel: tiny\nmatrix:\n  rlimit_as_headroom_mib: {bad}\n", "bad.yaml"
        )
        with pytest.raises(ScenarioError) as caught:
            load_scenario(wrong)
        assert caught.value.key.startswith("matrix.rlimit_as_headroom_mib"), bad
        assert why in caught.value.message + caught.value.fix, (bad, caught.value.render())


@pytest.mark.integration
@needs_cgroup
def test_groups_left_by_a_killed_coordinator_are_swept_by_the_next_run(scenario_file, tmp_path):
    coordinator, left = _confined(scenario_file, tmp_path / "killed")
    worker = first_worker(coordinator.pid)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.communicate(timeout=10)
    assert dies_within(worker.pid, 5.0)
    assert left.is_dir()  # nobody removed it: its coordinator is gone
    short = scenario_file(
        "name: next\nmodel: tiny\niterations: 3\nmatrix:\n  cgroup_memory_max_mib: [300]\n",
        "next.yaml",
    )
    run_cli("run", str(short), "--out", str(tmp_path / "next"), "--no-reference")
    assert not left.exists()


@pytest.mark.integration
def test_a_memory_error_in_an_iteration_is_a_row_and_the_worker_goes_on(scenario_file, tmp_path):
    path = scenario_file("name: nomem\nmodel: tiny\niterations: 6\n")
    run_cli("run", str(path), "--out", str(tmp_path / "run"), fault="no_memory@2")
    rows = read_iterations(tmp_path / "run").sort_values("iteration")
    assert list(rows.status) == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert rows.error.iloc[2] == "MemoryError: injected: an allocation failed"
    assert read_events(tmp_path / "run") is None  # no death, no harness error


def test_a_memory_error_outside_an_iteration_is_a_memory_death_not_ours():
    from stress.contract.protocol import Failure
    from stress.coordinator.workers.deaths import LastWords, classify
    from stress.records.events import EventKind
    from stress.worker.drivers import MNNError
    from stress.worker.main import _origin

    assert _origin(MemoryError()) == "memory"
    assert _origin(MNNError.wrap(MemoryError("std::bad_alloc"))) == "memory"
    assert _origin(MNNError.wrap(TypeError("x"))) == "mnn"
    assert _origin(KeyError("x")) == "harness"
    for origin, kind in (("memory", EventKind.MEMORY), ("mnn", EventKind.EXCEPTION)):
        failure = Failure(origin, "MemoryError", "no room", "Traceback ...")
        ending = classify(LastWords(3, None, None, failure), 60, False)
        assert ending.kind is kind and ending.is_death
    harness = Failure("harness", "KeyError", "x", "Traceback ...")
    assert classify(LastWords(3, None, None, harness), 60, False).kind is EventKind.HARNESS
    # The OOM killer's SIGKILL in the worker's cgroup, and a plain SIGKILL without it.
    assert classify(LastWords(-9, None, None, None, None, True), 60, False).kind is (
        EventKind.MEMORY
    )
    assert classify(LastWords(-9, None, None, None, None, False), 60, False).kind is (
        EventKind.CRASH
    )


def test_a_mapping_the_kernel_refuses_for_want_of_memory_is_a_memory_death():
    """mmap (``input_lifetime: unmapped``) fails with ENOMEM under the cap: an allocation that
    failed, not a bug of ours; other OSErrors stay ours."""
    import errno

    from stress.worker.main import _origin

    assert _origin(OSError(errno.ENOMEM, "mmap of 4096 bytes failed")) == "memory"
    assert _origin(OSError(errno.EACCES, "Permission denied")) == "harness"


def _fake_proc(tmp_path: Path, monkeypatch, mounts: list[str], own: list[str]) -> None:
    (tmp_path / "mountinfo").write_text("\n".join(mounts) + "\n")
    (tmp_path / "cgroup").write_text("\n".join(own) + "\n")
    monkeypatch.setattr(cgroups, "MOUNTINFO", tmp_path / "mountinfo")
    monkeypatch.setattr(cgroups, "CGROUP_OF_SELF", tmp_path / "cgroup")
    cgroups.find.cache_clear()


def test_cgroup_v2_is_used_where_the_memory_controller_is_delegated(tmp_path, monkeypatch):
    root = tmp_path / "unified"
    group = root / "user.slice" / "me"
    group.mkdir(parents=True)
    mount = f"30 25 0:26 / {root} rw,nosuid - cgroup2 cgroup2 rw"
    _fake_proc(tmp_path, monkeypatch, [mount], ["0::/user.slice/me"])
    (group / "cgroup.subtree_control").write_text("cpu io\n")
    try:
        found, why = cgroups.find()
        assert found is None and "does not delegate the memory controller" in why
        cgroups.find.cache_clear()
        (group / "cgroup.subtree_control").write_text("cpu memory io\n")
        found, why = cgroups.find()
        assert found == cgroups.Hierarchy(group, 2) and why == ""
        assert found.limit_file == "memory.max"
    finally:
        cgroups.find.cache_clear()


def test_no_memory_controller_says_so(tmp_path, monkeypatch):
    cpu = f"31 25 0:27 / {tmp_path} rw - cgroup cgroup rw,cpu,cpuacct"
    _fake_proc(tmp_path, monkeypatch, [cpu], ["4:cpu,cpuacct:/"])
    try:
        assert cgroups.find() == (
            None,
            "no cgroup filesystem with the memory controller is mounted",
        )
    finally:
        cgroups.find.cache_clear()


@pytest.mark.integration
def test_a_finite_hard_limit_is_respected_by_the_cap(scenario_file, tmp_path):
    """Under a finite hard RLIMIT_AS (a ulimit -v given to the whole run), headroom that
    would go past it caps at the hard limit: the worker runs capped, never failing to set a
    soft limit above its hard one."""
    hard = 64 << 30
    path = scenario_file(
        "name: capped\nmodel: tiny\niterations: 5\nmatrix:\n  rlimit_as_headroom_mib: [1048576]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MNN_STRESS_TEST_FAULT"}
    out = tmp_path / "run"
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "stress", "run", str(path), "--out", str(out), "--no-reference"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (hard, hard)),
    )
    stdout, stderr = coordinator.communicate(timeout=120)
    assert coordinator.returncode == 0, stderr
    assert read_events(out) is None  # no harness error: the cap was set
    assert set(read_iterations(out).status) == {"ok"}


def test_an_oom_kill_in_the_group_is_a_memory_death_only_for_a_sigkill():
    """The OOM killer may have ended another process of the group; a worker that exits or
    crashes on its own is not a memory death for that."""
    from stress.coordinator.workers.deaths import LastWords, classify
    from stress.records.events import EventKind

    assert classify(LastWords(-9, None, None, None, None, True), 60, False).kind is (
        EventKind.MEMORY
    )
    assert classify(LastWords(-11, None, None, None, None, True), 60, False).kind is (
        EventKind.CRASH
    )
    assert classify(LastWords(1, None, None, None, None, True), 60, False).kind is EventKind.EXIT


def test_cgroup_v1_is_used_where_the_memory_hierarchy_is_mounted(tmp_path, monkeypatch):
    """v1: the memory hierarchy (named in the super options, not the source), the group
    this process is in there (not the v2 one), and v1's file names."""
    memory, unified = tmp_path / "memory", tmp_path / "unified"
    group = memory / "jobs" / "me"
    group.mkdir(parents=True)
    unified.mkdir()
    (unified / "cgroup.subtree_control").write_text("\n")
    mounts = [
        f"32 31 0:29 / {tmp_path / 'cpu'} rw,relatime - cgroup cgroup rw,cpu",
        f"35 31 0:32 / {memory} rw,relatime - cgroup cgroup rw,memory",
        f"41 31 0:38 / {unified} rw,relatime - cgroup2 cgroup2 rw",
    ]
    _fake_proc(tmp_path, monkeypatch, mounts, ["4:memory:/jobs/me", "1:cpu:/", "0::/"])
    try:
        found, why = cgroups.find()
        assert found == cgroups.Hierarchy(group, 1) and why == ""
        assert found.limit_file == "memory.limit_in_bytes"
    finally:
        cgroups.find.cache_clear()


@pytest.mark.integration
@needs_cgroup
def test_the_worker_cannot_swap_past_its_cgroup_limit(scenario_file, tmp_path):
    """Swap is limited too (v1 memory.memsw.limit_in_bytes, v2 memory.swap.max), else a
    worker over its limit would swap instead of meeting the OOM killer."""
    coordinator, group = _confined(scenario_file, tmp_path / "run")
    hierarchy, _ = cgroups.find()
    swap = "memory.memsw.limit_in_bytes" if hierarchy.version == 1 else "memory.swap.max"
    if not (group / swap).exists():
        _stop(coordinator)
        pytest.skip(f"no swap accounting here ({swap})")
    limit = (group / swap).read_text().strip()
    _stop(coordinator)
    assert limit == (str(300 * MIB) if hierarchy.version == 1 else "0")


@needs_cgroup
def test_a_group_whose_limit_is_refused_is_removed():
    name = cgroups.group_name("refused", 0)
    hierarchy, _ = cgroups.find()
    with pytest.raises(OSError):
        cgroups.MemoryGroup(name, -5)
    assert not (hierarchy.parent / name).exists()


def test_off_needs_no_memory_cgroup(scenario_file, monkeypatch):
    monkeypatch.setattr(cgroups, "find", lambda: (None, "no cgroup filesystem is mounted"))
    path = scenario_file("name: free\nmodel: tiny\nmatrix:\n  cgroup_memory_max_mib: [off]\n")
    (variant,) = expand(load_scenario(path))
    assert variant.params["cgroup_memory_max_mib"] is None


@pytest.mark.integration
@needs_cgroup
def test_a_sigkill_from_outside_is_a_crash_when_the_oom_killer_did_not_act(scenario_file, tmp_path):
    """Only the OOM killer's own kills in the group are memory deaths: a kill -9 of a
    worker in a memory group is a crash like any other."""
    coordinator, _ = _confined(scenario_file, tmp_path / "run")
    worker = first_worker(coordinator.pid)
    wait_for_iterations(tmp_path / "run", 3)
    worker.send_signal(signal.SIGKILL)
    assert dies_within(worker.pid, 5.0)
    deadline = time.monotonic() + 60
    while {w.pid for w in workers_of(coordinator.pid)} in (set(), {worker.pid}):
        assert time.monotonic() < deadline, "no worker replaced the killed one"
        time.sleep(0.05)
    _stop(coordinator)
    events = read_events(tmp_path / "run")
    assert list(events[events.signal == "SIGKILL"].kind) == ["crash"]
