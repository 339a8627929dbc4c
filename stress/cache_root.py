"""Where mnn-stress keeps what outlives a run: ``$MNN_STRESS_CACHE``, default
``~/.cache/mnn-stress`` (built models, MNN environments, bug reports). Standard library only:
the bug report needs it when everything else may be broken."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VAR = "MNN_STRESS_CACHE"


def cache_dir() -> Path:
    root = os.environ.get(CACHE_VAR) or Path.home() / ".cache" / "mnn-stress"
    return Path(root)
