"""Memory the worker cannot have: an address-space cap just above what its set-up used
(``rlimit_as_headroom_mib``: allocations fail, and MNN must say so), or a cgroup limit
(``cgroup_memory_max_mib``: the kernel's OOM killer ends it). Either way, what happens is a
finding about MNN: an error row, an exception or a death, never a failure of the harness."""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from typing import Any

from stress.contract.stages import Launch
from stress.factors import Factor
from stress.factors.pressure import MAX_MIB

MIB = 1 << 20


def address_space_bytes() -> int:
    """This process's mapped address space now (VmSize), from /proc."""
    with open("/proc/self/statm", "rb") as statm:
        pages = int(statm.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _cap_address_space(value: int | None, params: Mapping[str, Any]) -> None:
    """RLIMIT_AS (soft) = the address space after set-up + ``value`` MiB."""
    if value is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = address_space_bytes() + value * MIB
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _cgroup_limit(value: int | None, launch: Launch) -> None:
    if value is not None:
        launch.memory_limit_bytes = value * MIB


def _no_cgroup(value: int | None) -> tuple[str, str] | None:
    if value is None:
        return None
    from stress import cgroups

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
    doc="Cap the worker's address space (RLIMIT_AS) at its size once set up plus this many "
    "MiB, so that allocations inside MNN fail (off: no cap). What MNN does then (an rc, a "
    "status, an exception, a crash) is recorded as a finding.",
    after_setup=_cap_address_space,
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

FACTORS = (RLIMIT_AS_HEADROOM_MIB, CGROUP_MEMORY_MAX_MIB)
