"""The commands run without pandas, installed or not. pyarrow imports pandas the first time it
builds an array where pandas is installed (0.3-0.4 s, a third of a ``summary``), and
mnn-stress uses none of it: with pandas kept out, every command starts as fast, and behaves
exactly, as in a plain install (pandas is only a test extra). Library use of ``stress``
(``import stress.analysis`` in a notebook) is left alone: only the command installs this."""

from __future__ import annotations

import importlib.abc
import sys


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"mnn-stress's commands do without {name}", name=name)


def keep_pandas_out() -> None:
    """From now on, ``import pandas`` fails in this process as if it were not installed."""
    if not any(isinstance(finder, _NoPandas) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())
