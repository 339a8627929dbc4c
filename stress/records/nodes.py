"""Where rows come from: this machine's name in the ``host`` column, and its fingerprint for the
manifest's ``nodes``."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata

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
        cpu_model=cpu_model(),
        kernel=platform.release(),
        logical_cores=os.cpu_count(),
        mnn_version=_installed("MNN"),
        ray_node_id=ray_node_id,
        address=address,
    )


def cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or None


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
