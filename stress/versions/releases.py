"""MNN versions by name: ``installed`` (mnn-stress's own MNN) or a release number (3.4.1).

Stdlib only: the ``mnn_version`` factor, which workers import, and the cached environments
(``stress.versions.envs``) both read these, so neither imports the other for them.
"""

from __future__ import annotations

import re

from stress.errors import ModelError

INSTALLED = "installed"
_RELEASE = re.compile(r"\d+\.\d+\.\d+")


def is_release(value: str) -> bool:
    """A version string as MNN's releases are numbered (3.4.1)."""
    return _RELEASE.fullmatch(value) is not None


def version_key(version: str) -> tuple[int, ...]:
    """A release number as a tuple that sorts releases in order."""
    return tuple(int(part) for part in version.split("."))


def mnn_version() -> str:
    """The installed MNN's version, read from package metadata (no ``import MNN``)."""
    from importlib import metadata  # here: workers import this module, and need it not

    try:
        return metadata.version("MNN")
    except metadata.PackageNotFoundError as exc:
        raise ModelError(
            "MNN is not installed in this Python", fix="run ./run.sh, which installs it into .venv/"
        ) from exc
