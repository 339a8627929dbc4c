"""Which MNN releases a set of scenario files asks for (``envs prepare`` without ``--version``)."""

from __future__ import annotations

from pathlib import Path

from stress.scenario.load import read_spec
from stress.scenario.matrix import given
from stress.versions.envs import needs_env
from stress.versions.releases import version_key


def needed_by(paths: list[Path]) -> dict[str, list[str]]:
    """Per MNN release that needs an environment, the scenario files whose matrix asks for
    it (read against the schema only: their environments may not exist yet)."""
    wanted: dict[str, list[str]] = {}
    for path in paths:
        for version in given(read_spec(path)).get("mnn_version", []):
            if needs_env(version):
                wanted.setdefault(version, []).append(str(path))
    return dict(sorted(wanted.items(), key=lambda item: version_key(item[0])))
