"""Memory the worker cannot have: an address-space cap just above what it had mapped
(``rlimit_as_headroom_mib``: allocations fail, and MNN must say so), lowered once it is set up
or before its engine is built (``rlimit_as_from``), or a cgroup limit
(``cgroup_memory_max_mib``: the kernel's OOM killer ends it). Either way, what happens is a
finding about MNN: an error row, an exception or a death, never a failure of the harness."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from typing import Any

from stress.contract.stages import Launch
from stress.factors.factor import Factor, Rule
from stress.factors.pressure import MAX_MIB

MIB = 1 << 20


def address_space_bytes() -> int:
    """This process's mapped address space now (VmSize), from /proc."""
    with open("/proc/self/statm", "rb") as statm:
        pages = int(statm.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _cap_address_space(value: int | None) -> None:
    """RLIMIT_AS (soft) = the address space now + ``value`` MiB."""
    if value is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = address_space_bytes() + value * MIB
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def lift_address_space_cap() -> None:
    """The soft RLIMIT_AS back up to the hard one: a worker that is ending under its cap must
    still have the memory to say how it ended."""
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))


# A capped worker's glibc malloc maps what it needs when it needs it: one arena, and a fixed
# mmap threshold (glibc's default, no longer raised after each free, which also keeps the trim
# threshold low). Otherwise each thread's arena (64 MiB of address space reserved before the
# cap) and the memory malloc keeps after a free are headroom the cap cannot see: two threads
# with no headroom ran clean.
MALLOC_AT_THE_CAP = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": str(128 << 10)}


def _malloc_that_the_cap_sees(value: int | None, launch: Launch) -> None:
    if value is not None:
        launch.env.update(MALLOC_AT_THE_CAP)


def _cap_before_build(value: int | None, params: Mapping[str, Any]) -> None:
    if params["rlimit_as_from"] == "setup":
        _cap_address_space(value)


def _cap_after_setup(value: int | None, params: Mapping[str, Any]) -> None:
    if params["rlimit_as_from"] == "loop":
        _cap_address_space(value)


def _setup_needs_a_cap(params: Mapping[str, Any]) -> str | None:
    if params["rlimit_as_from"] == "loop" or params["rlimit_as_headroom_mib"] is not None:
        return None
    return (
        "rlimit_as_from=setup with rlimit_as_headroom_mib=off: there is no cap to lower "
        "before the set-up; give rlimit_as_headroom_mib a number of MiB, or leave "
        "rlimit_as_from at loop"
    )


def _cgroup_limit(value: int | None, launch: Launch) -> None:
    if value is not None:
        launch.memory_limit_bytes = value * MIB


def _no_cgroup(value: int | None) -> tuple[str, str] | None:
    if value is None:
        return None
    from stress.coordinator.workers import cgroups

    why = cgroups.unavailable()
    if why is None:
        return None
    return (
        f"cgroup_memory_max_mib={value} needs a memory cgroup this user may create, and "
        f"there is none: {why}",
        "run as root, or inside a cgroup v2 group that delegates the memory controller "
        "(systemd-run --user --scope -p Delegate=yes ...), or leave cgroup_memory_max_mib off",
    )


RLIMIT_AS_HEADROOM_MIB = Factor(
    name="rlimit_as_headroom_mib",
    kind=int,
    default=None,
    off=True,
    minimum=0,
    maximum=MAX_MIB,
    doc="Cap the worker's address space (RLIMIT_AS) at its size once set up (or before its "
    "engine is built: rlimit_as_from) plus this many MiB, so that allocations inside MNN fail "
    "(off: no cap). What MNN does then (an rc, a status, an exception, a crash) is recorded "
    "as a finding. The worker's malloc then uses one arena and a fixed mmap threshold, so "
    "that the cap sees what it maps.",
    launch=_malloc_that_the_cap_sees,
    before_build=_cap_before_build,
    after_setup=_cap_after_setup,
)

RLIMIT_AS_FROM = Factor(
    name="rlimit_as_from",
    kind=str,
    default="loop",
    choices=("loop", "setup"),
    doc="When rlimit_as_headroom_mib's cap is lowered: loop = once every thread is set up "
    "(only per-iteration allocations can fail); setup = right before the engine is built "
    "(Interpreter, session, module), the headroom measured then, so their creation can fail "
    "too. Needs rlimit_as_headroom_mib.",
    rules=(Rule(("rlimit_as_from", "rlimit_as_headroom_mib"), _setup_needs_a_cap),),
)

CGROUP_MEMORY_MAX_MIB = Factor(
    name="cgroup_memory_max_mib",
    kind=int,
    default=None,
    off=True,
    minimum=1,
    maximum=MAX_MIB,
    doc="A memory cgroup limit for the worker in MiB (cgroup v2 memory.max, or v1 "
    "memory.limit_in_bytes), so the kernel's OOM killer ends it when it needs more (off: "
    "none). Refused at validation where no memory cgroup can be made.",
    launch=_cgroup_limit,
    unavailable=_no_cgroup,
)

FACTORS = (RLIMIT_AS_HEADROOM_MIB, RLIMIT_AS_FROM, CGROUP_MEMORY_MAX_MIB)
