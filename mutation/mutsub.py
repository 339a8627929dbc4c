"""pytest plugin (-p mutsub): feed mutmut 3 the functions that *subprocesses* entered.

mutmut 3 maps functions to tests by recording trampoline hits in the pytest process only; this
project's integration tests run the code in subprocesses, so without this almost every function
would be "no tests". During mutmut's stats run this plugin gives each test a fresh MUTSUB_DIR
(inherited by subprocesses, where mutsub_boot writes hits) and, before mutmut's own teardown
hook reads state()._stats, adds the subprocess hits to it.
"""

import os
import shutil
import tempfile

import pytest

_dir = None


def _active():
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    global _dir
    if not _active():
        return
    _dir = tempfile.mkdtemp(prefix="mutsub-")
    os.environ["MUTSUB_DIR"] = _dir


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    global _dir
    if not _active() or _dir is None:
        return
    from mutmut.state import state

    st = state()
    n = 0
    for fname in os.listdir(_dir):
        with open(os.path.join(_dir, fname)) as f:
            for line in f:
                name, _, caller = line.rstrip("\n").partition("\t")
                if name:
                    st._stats.add(name)
                    n += 1
                    if caller:
                        st.function_dependencies[name].add(caller)
    if os.environ.get("MUTSUB_DEBUG"):
        print(f"\nmutsub: {item.nodeid}: {n} subprocess hits")
    shutil.rmtree(_dir, ignore_errors=True)
    os.environ.pop("MUTSUB_DIR", None)
    _dir = None
