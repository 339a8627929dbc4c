"""Where mnn-stress keeps what outlives a run: ``$MNN_STRESS_CACHE``, else
``$XDG_CACHE_HOME/mnn-stress``, else ``~/.cache/mnn-stress`` (built models, MNN environments,
bug reports). Standard library only (and ``stress.errors``): the bug report needs it when
everything else may be broken."""

from __future__ import annotations

import os
from pathlib import Path

from stress.errors import StressError

CACHE_VAR = "MNN_STRESS_CACHE"


def cache_dir() -> Path:
    if os.environ.get(CACHE_VAR):
        return Path(os.environ[CACHE_VAR])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative path is invalid, and ignored
        return Path(xdg) / "mnn-stress"
    home = _home()
    if home is None:  # no HOME, and a uid /etc/passwd does not know (docker run -u 12345)
        raise _no_cache("no home folder for the cache: HOME is unset and /etc/passwd has none")
    return home / ".cache" / "mnn-stress"


def make(folder: Path) -> None:
    """``folder`` made with its parents, but never a home folder that does not exist (a cron
    job's or a service's ``HOME``): a folder in it is refused, not created."""
    home = _home()
    if home is not None and home in folder.absolute().parents and not home.is_dir():
        raise _no_cache(f"the home folder {home} does not exist, so {folder} cannot be made")
    folder.mkdir(parents=True, exist_ok=True)


def _home() -> Path | None:
    try:
        return Path.home()
    except RuntimeError:  # "Could not determine home directory"
        return None


def _no_cache(message: str) -> StressError:
    return StressError(message, key=CACHE_VAR, fix=f"set {CACHE_VAR} to a folder for the cache")
