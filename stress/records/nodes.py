"""Where rows come from: this machine's name in the ``host`` column, and its fingerprint for the
manifest's ``nodes``."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path

from stress.records.manifest_sections import NodeEntry


def hostname() -> str:
    """This machine's name, as rows and events name it when it runs alone."""
    return socket.gethostname()


def fingerprint(
    host: str | None = None, ray_node_id: str | None = None, address: str | None = None
) -> NodeEntry:
    """This machine, under ``host`` (default: its name); a Ray node's id and address."""
    return NodeEntry(
        host=host or hostname(),
        hostname=hostname(),
        machine=platform.machine(),
        cpu_model=cpu_info()[0],
        kernel=platform.release(),
        logical_cores=os.cpu_count(),
        mnn_version=installed("MNN"),
        ray_node_id=ray_node_id,
        address=address,
    )


def cpu_info() -> tuple[str | None, list[str]]:
    """The CPU's model name and flags (/proc/cpuinfo; without it, what the platform says)."""
    model, flags = None, []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = value.split()
    except OSError:
        model = platform.processor() or None
    return model, flags


def installed(package: str) -> str | None:
    """The version of ``package`` installed here, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
