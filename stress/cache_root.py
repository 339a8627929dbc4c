"""Where mnn-stress keeps what outlives a run: ``$MNN_STRESS_CACHE``, else
``$XDG_CACHE_HOME/mnn-stress``, else ``~/.cache/mnn-stress`` (built models, MNN environments,
bug reports). Standard library only: the bug report needs it when everything else may be
broken."""

from __future__ import annotations

import errno
import os
from pathlib import Path

CACHE_VAR = "MNN_STRESS_CACHE"


def cache_dir() -> Path:
    if os.environ.get(CACHE_VAR):
        return Path(os.environ[CACHE_VAR])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative path is invalid, and ignored
        return Path(xdg) / "mnn-stress"
    return Path.home() / ".cache" / "mnn-stress"


def make(folder: Path) -> None:
    """``folder`` made with its parents, but never a home folder that does not exist (a cron
    job's or a service's ``HOME``): a folder in it is refused with ENOENT, not created."""
    home = Path.home()
    if home in folder.absolute().parents and not home.is_dir():
        message = f"the home folder {home} does not exist (set {CACHE_VAR} to a folder)"
        raise FileNotFoundError(errno.ENOENT, message, str(home))
    folder.mkdir(parents=True, exist_ok=True)
