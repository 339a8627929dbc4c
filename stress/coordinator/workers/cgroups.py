"""A memory cgroup per worker (``cgroup_memory_max_mib``): the kernel's OOM killer, not a
failed allocation, ends a worker that needs more. Coordinator side: the group is made before
the worker gets its job, the worker's pid is moved in, and after the worker is reaped the
group says whether the OOM killer acted, and is removed.

cgroup v2 (``memory.max``) where this process's group may have children with the memory
controller; else v1 (``memory.limit_in_bytes``) where its memory hierarchy is mounted and
writable. ``unavailable()`` says why neither is usable.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

MOUNTINFO = Path("/proc/self/mountinfo")
CGROUP_OF_SELF = Path("/proc/self/cgroup")


@dataclass(frozen=True)
class Hierarchy:
    """Where new memory groups go (the directory of this process's own group), and how
    they are spelled: v1 or v2."""

    parent: Path
    version: int

    @property
    def limit_file(self) -> str:
        return "memory.max" if self.version == 2 else "memory.limit_in_bytes"


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of every cgroup mount."""
    found = []
    for line in MOUNTINFO.read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if tail and tail[0] in ("cgroup", "cgroup2"):
            found.append((fields[4], tail[0], tail[-1]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's group per controller ("" for the v2 unified one)."""
    paths = {}
    for line in CGROUP_OF_SELF.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _inside(mount: str, own: str) -> Path:
    """This process's group under ``mount``; the mount's root when the group is not visible
    there (a cgroup namespace shows it as the root)."""
    candidate = Path(mount) / own.lstrip("/")
    return candidate if candidate.is_dir() else Path(mount)


def _v2(mount: str, own: str) -> tuple[Hierarchy | None, str]:
    group = _inside(mount, own)
    try:
        delegated = (group / "cgroup.subtree_control").read_text().split()
    except OSError as exc:
        return None, f"cgroup v2 at {group}: {exc.strerror}"
    if "memory" not in delegated:
        return None, f"cgroup v2 at {group} does not delegate the memory controller to children"
    if not os.access(group, os.W_OK):
        return None, f"cgroup v2 at {group} is not writable by this user"
    return Hierarchy(group, 2), ""


def _v1(mount: str, own: str) -> tuple[Hierarchy | None, str]:
    group = _inside(mount, own)
    if not os.access(group, os.W_OK):
        return None, f"the v1 memory controller at {group} is not writable by this user"
    return Hierarchy(group, 1), ""


@functools.cache
def find() -> tuple[Hierarchy | None, str]:
    """The usable hierarchy, or None and why none is (every reason found)."""
    try:
        mounts, own = _mounts(), _own_paths()
    except (OSError, ValueError) as exc:
        return None, f"cannot read this process's cgroups: {exc}"
    reasons = []
    for mount, kind, options in mounts:
        if kind == "cgroup2":
            found, why = _v2(mount, own.get("", "/"))
        elif "memory" in options.split(","):
            found, why = _v1(mount, own.get("memory", "/"))
        else:
            continue
        if found is not None:
            return found, ""
        reasons.append(why)
    if not reasons:
        reasons.append("no cgroup filesystem with the memory controller is mounted")
    return None, "; ".join(reasons)


def unavailable() -> str | None:
    """Why a memory cgroup cannot be made here, or None when it can."""
    found, why = find()
    return None if found is not None else why


PREFIX = "mnn-stress-"


@functools.cache
def sweep_stale() -> list[Path]:
    """Remove the groups left by coordinators that were killed (their workers died with
    them, so the groups are empty); once per process. Returns what it removed."""
    hierarchy, _ = find()
    removed = []
    for group in hierarchy.parent.glob(PREFIX + "*") if hierarchy else []:
        owner = group.name.removeprefix(PREFIX).split("-", 1)[0]
        if owner.isdigit() and not psutil.pid_exists(int(owner)):
            with contextlib.suppress(OSError):
                group.rmdir()
                removed.append(group)
    return removed


def group_name(variant_id: str, worker_id: int) -> str:
    """A worker's group: named after this coordinator, so stale ones can be told apart."""
    return f"{PREFIX}{os.getpid()}-{variant_id}-w{worker_id}"


class MemoryGroup:
    """One worker's memory cgroup with its limit; ``add`` moves a process in."""

    def __init__(self, name: str, limit_bytes: int) -> None:
        hierarchy, why = find()
        if hierarchy is None:
            raise OSError(f"no memory cgroup: {why}")
        sweep_stale()
        self.hierarchy = hierarchy
        self.path = hierarchy.parent / name
        self.path.mkdir()
        try:
            (self.path / hierarchy.limit_file).write_text(str(limit_bytes))
            swap = self.path / "memory.memsw.limit_in_bytes"  # v1 with swap accounting
            if hierarchy.version == 1 and swap.exists():
                swap.write_text(str(limit_bytes))
            elif hierarchy.version == 2 and (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
        except OSError:
            self.remove()
            raise

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def oom_kills(self) -> int:
        """How many processes of the group the OOM killer ended."""
        name = "memory.events" if self.hierarchy.version == 2 else "memory.oom_control"
        try:
            lines = (self.path / name).read_text().splitlines()
        except OSError:
            return 0
        for line in lines:
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        """Remove the group (its processes are gone: a dead worker leaves it empty)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()
