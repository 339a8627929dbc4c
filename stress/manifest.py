"""RUN_DIR/manifest.json: what was run, where, with which versions, and how each variant ended.

Rewritten atomically whenever a variant changes state, so an interrupted run still says
what it was doing.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

PACKAGES = (
    "mnn-stress",
    "MNN",
    "numpy",
    "pyarrow",
    "psutil",
    "click",
    "pydantic",
    "ruamel.yaml",
    "xxhash",
    "rich",
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def host_info() -> dict[str, Any]:
    cpu_model, flags = _cpuinfo()
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_flags": flags,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
    }


def _cpuinfo() -> tuple[str | None, list[str]]:
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


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


class Manifest:
    def __init__(self, run_dir: Path, data: dict[str, Any]) -> None:
        self.path = run_dir / "manifest.json"
        self.data = data

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(temporary, self.path)


def read_manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())
