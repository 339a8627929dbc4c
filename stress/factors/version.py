"""Which MNN the workers run: ``installed`` (mnn-stress's own) or a released version, run in a
cached virtual environment that holds only that MNN and numpy (``stress.versions.envs``).

The column ``mnn_version`` records the version that really ran (the worker's ``MNN.version()``),
so a worker whose MNN is not the one asked for stops at once, as a harness error: its
environment is broken, and recording it would attribute one version's behaviour to another.
Stdlib only at import: workers import this (``versions.envs`` only in the coordinator's hooks).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stress.contract.stages import Launch
from stress.factors.factor import Factor
from stress.versions.releases import INSTALLED, is_release


class EnvironmentMismatch(RuntimeError):
    """The worker's MNN is not the version its variant asked for (a broken environment)."""


def _malformed(value: str) -> str | None:
    if value == INSTALLED or is_release(value):
        return None
    return f"{value!r} is neither `installed` nor a release number such as 3.4.1"


def _interpreter(value: str, launch: Launch) -> None:
    """Coordinator: a version other than the installed one runs in its cached environment."""
    if value == INSTALLED:
        return
    from stress.versions import envs

    if envs.needs_env(value):
        launch.python = str(envs.interpreter(value))


def _no_environment(value: str) -> tuple[str, str] | None:
    """Validation: the cached environment of the version must exist already."""
    if value == INSTALLED:
        return None
    from stress.versions import envs

    if not envs.needs_env(value):
        return None
    python = envs.python_for(value)
    if python is None:
        return (
            f"mnn_version={value} runs in a cached environment, and there is none yet "
            f"(looked for {envs.env_dir(value)})",
            "run `mnn-stress envs prepare` on this scenario file (`./run.sh mnn-stress envs "
            "prepare FILE`): it makes every version's, each in about 5-15 s and 125 MiB",
        )
    wrong = _broken(str(python), value)
    if wrong is None:
        return None
    return (
        f"mnn_version={value} runs in the cached environment {envs.env_dir(value)}, which is "
        f"broken: {wrong}",
        f"run `mnn-stress envs prepare --version {value}`: it checks the environment and "
        "builds it again",
    )


@functools.cache
def _broken(python: str, version: str) -> str | None:
    """Why the environment does not import ``version`` (it is run once: about a second),
    or None. Every worker checks again (``_check_version``), for an environment broken after
    validation."""
    from stress.versions import envs

    return envs.wrong_mnn(Path(python), version)


def _check_version(value: str, params: Mapping[str, Any]) -> None:
    """Worker, before anything else: the MNN this interpreter imports is the one asked for."""
    if value == INSTALLED:
        return
    import MNN

    found = MNN.version()
    if found != value:
        raise EnvironmentMismatch(
            f"mnn_version={value} was asked, but this worker's interpreter ({sys.executable}) "
            f"imports MNN {found}: its environment at {sys.prefix} is broken; "
            f"`mnn-stress envs prepare --version {value}` checks it and builds it again"
        )


MNN_VERSION = Factor(
    "mnn_version",
    str,
    INSTALLED,
    "which MNN the workers run: `installed` (mnn-stress's own) or a released version such as "
    "3.4.1, run in a cached virtual environment holding only that MNN and numpy (create it "
    "with `mnn-stress envs prepare SCENARIO`). Its column records the version that really ran.",
    value_check=_malformed,
    launch=_interpreter,
    before_loop=_check_version,
    unavailable=_no_environment,
)

FACTORS = (MNN_VERSION,)
