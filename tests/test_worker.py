"""The worker side's own contract: it must run under an interpreter with only MNN and numpy."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO

HARNESS_ONLY = {"pyarrow", "pydantic", "ruamel", "click", "rich", "psutil", "xxhash", "pandas"}


def test_worker_code_imports_only_stdlib_numpy_and_mnn():
    probe = (
        "import sys\n"
        "import stress.worker, stress.drivers.session, stress.drivers.module, stress.inputs\n"
        "import stress.factors, stress.protocol, stress.ring, stress.faults, stress.dtypes\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HARNESS_ONLY)!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"
