"""Cached virtual environments for the ``mnn_version`` factor: one per (MNN release, Python
version, platform), holding only that MNN wheel and numpy. The worker needs nothing else:
mnn-stress's own code reaches it through PYTHONPATH.

They live under ``$MNN_STRESS_ENVS``, default ``<cache>/envs`` next to the model cache
(``$MNN_STRESS_CACHE``, default ``~/.cache/mnn-stress``). Each is built in a temporary
directory and renamed into place, under a lock of its own, so two runs preparing it at once
build it once; its marker file, written last, says what was installed and that its
interpreter's ``import MNN`` reported that version. numpy is pinned to the coordinator's own,
so every environment generates the same inputs and only MNN differs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from stress.cache_root import cache_dir, make
from stress.errors import EnvError
from stress.versions.releases import INSTALLED, is_release, mnn_version, version_key

ENVS_VAR = "MNN_STRESS_ENVS"
MARKER = "mnn-stress-env.json"
INSTALL_TIMEOUT_S = 900
PROBE_TIMEOUT_S = 120
PIP_PYTHON_OPTION = (22, 3)  # ``pip --python`` installs into another interpreter from here on

# Run in an environment: what it imports, reported on stderr (MNN's import chatter is on fd 1).
_PROBE = (
    "import json, sys, numpy, MNN\n"
    "sys.stderr.write('\\nMNN_STRESS_ENV ' + json.dumps({'mnn': MNN.version(), "
    "'numpy': numpy.__version__, 'python': sys.version.split()[0]}) + '\\n')\n"
)

Say = Callable[[str], None]


@dataclass(frozen=True)
class EnvInfo:
    """What an environment's marker file says: its versions, location, size and build time."""

    mnn: str
    numpy: str
    python: str
    platform: str
    path: str
    requirements: list[str]
    size_bytes: int
    seconds: float
    created: str

    @property
    def interpreter(self) -> Path:
        return Path(self.path) / "bin" / "python"


def envs_root() -> Path:
    return Path(os.environ.get(ENVS_VAR) or cache_dir() / "envs")


def env_name(version: str) -> str:
    python = f"py{sys.version_info.major}.{sys.version_info.minor}"
    return f"mnn-{version}-{python}-{sysconfig.get_platform()}"


def env_dir(version: str) -> Path:
    return envs_root() / env_name(version)


def interpreter(version: str) -> Path:
    return env_dir(version) / "bin" / "python"


def needs_env(version: str) -> bool:
    """Whether ``mnn_version=version`` runs in a cached environment: not for the installed
    MNN, asked for by name or by number (the coordinator's interpreter already has it)."""
    return version != INSTALLED and version != mnn_version()


def read_env(path: Path) -> EnvInfo | None:
    """The environment at ``path`` if it is complete (its marker written), else None."""
    try:
        return EnvInfo(**json.loads((path / MARKER).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def python_for(version: str) -> Path | None:
    """The interpreter of the version's environment, or None when it was not (fully) made."""
    info = read_env(env_dir(version))
    return info.interpreter if info is not None and info.interpreter.exists() else None


def list_envs() -> list[EnvInfo]:
    """Every complete environment under the root, oldest MNN first."""
    root = envs_root()
    found = [read_env(p) for p in sorted(root.iterdir())] if root.is_dir() else []
    return sorted((e for e in found if e is not None), key=lambda e: version_key(e.mnn))


def numpy_requirement() -> str:
    """The coordinator's numpy, exactly: every MNN release from 3.0.0 on runs with it."""
    return f"numpy=={metadata.version('numpy')}"


def prepare(version: str, say: Say = lambda line: None) -> EnvInfo:
    """The version's environment, made if missing; an existing one is probed again and made
    anew when its interpreter no longer imports that MNN. EnvError when it cannot be made."""
    if not is_release(version):
        raise EnvError(f"{version!r} is not a release number such as 3.4.1", key="mnn_version")
    final = env_dir(version)
    with _locked(final, say):
        info = read_env(final)
        if info is not None:
            problem = wrong_mnn(info.interpreter, version)
            if problem is None:
                return info
            say(f"MNN {version}: the environment at {final} is broken ({problem}); rebuilding")
        return _build(version, final, say)


@contextlib.contextmanager
def _locked(final: Path, say: Say) -> Iterator[None]:
    """One preparer per environment at a time (flock: released if the process dies)."""
    make(final.parent)
    fd = os.open(final.parent / f".{final.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another mnn-stress that is preparing {final.name}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build(version: str, final: Path, say: Say) -> EnvInfo:
    """venv, pip install, fix the paths, rename into place, probe, then the marker."""
    started = time.monotonic()
    for stale in final.parent.glob(f".building-{final.name}-*"):  # left by a killed build
        shutil.rmtree(stale, ignore_errors=True)
    building = final.parent / f".building-{final.name}-{os.getpid()}"
    requirements = [f"MNN=={version}", numpy_requirement()]
    say(f"MNN {version}: creating {final} ({' '.join(requirements)})")
    try:
        _install(building, requirements)
        _relocate(building, final)
        if final.exists():
            shutil.rmtree(final)
        os.rename(building, final)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    found = _probe(final / "bin" / "python")
    if found["mnn"] != version:
        raise EnvError(
            f"the environment made for MNN {version} imports MNN {found['mnn']}",
            file=str(final),
            fix="check pip's index and any PYTHONPATH that could hold another MNN",
        )
    info = EnvInfo(
        mnn=found["mnn"],
        numpy=found["numpy"],
        python=found["python"],
        platform=sysconfig.get_platform(),
        path=str(final),
        requirements=requirements,
        size_bytes=disk_usage(final),
        seconds=round(time.monotonic() - started, 1),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    marker = final / f"{MARKER}.tmp"
    marker.write_text(json.dumps(asdict(info), indent=2))
    os.replace(marker, final / MARKER)
    say(f"MNN {version}: ready in {info.seconds:.0f} s, {info.size_bytes / 2**20:.0f} MiB")
    return info


def _install(target: Path, requirements: list[str]) -> None:
    """A venv with the requirements. With a pip that can install into another interpreter,
    the venv gets no pip of its own (3 s and 13 MB less each)."""
    own_pip = not _pip_installs_elsewhere()
    venv = [sys.executable, "-m", "venv", *([] if own_pip else ["--without-pip"]), str(target)]
    _run(venv, f"create a virtual environment at {target}")
    python = str(target / "bin" / "python")
    pip = [python, "-m", "pip"] if own_pip else [sys.executable, "-m", "pip", "--python", python]
    options = ["--quiet", "--disable-pip-version-check", "--no-input", "--only-binary=:all:"]
    _run([*pip, "install", *options, *requirements], f"pip install {' '.join(requirements)}")


def _pip_installs_elsewhere() -> bool:
    try:
        return version_key(metadata.version("pip").split("b")[0])[:2] >= PIP_PYTHON_OPTION
    except (metadata.PackageNotFoundError, ValueError):
        return False


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvError(f"cannot {what}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise EnvError(
            f"cannot {what} (exit {done.returncode}):\n{tail}",
            fix="check that pip reaches its package index and that this MNN release has a "
            f"wheel for Python {sys.version_info.major}.{sys.version_info.minor} here "
            "(`pip index versions MNN` lists them)",
        )


def _relocate(building: Path, final: Path) -> None:
    """Scripts and ``pyvenv.cfg`` name the directory they were made in: name the final one."""
    old, new = str(building).encode(), str(final).encode()
    for path in [building / "pyvenv.cfg", *(building / "bin").iterdir()]:
        if path.is_symlink() or not path.is_file():
            continue
        content = path.read_bytes()
        if old in content:
            path.write_bytes(content.replace(old, new))


def _probe(python: Path) -> dict[str, str]:
    """Run ``import MNN`` in the environment, as a worker would; its versions."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run(
            [str(python), "-c", _PROBE],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvError(f"cannot run {python}: {exc}") from exc
    for line in reversed(done.stderr.splitlines()):
        if line.startswith("MNN_STRESS_ENV "):
            return json.loads(line.removeprefix("MNN_STRESS_ENV "))
    tail = "\n".join(done.stderr.strip().splitlines()[-8:])
    raise EnvError(f"`import MNN` fails in {python} (exit {done.returncode}):\n{tail}")


def wrong_mnn(python: Path, version: str) -> str | None:
    """Why the environment's interpreter does not give this MNN, or None when it does."""
    try:
        found = _probe(python)["mnn"]
    except EnvError as exc:
        return exc.message.splitlines()[0]
    return None if found == version else f"it imports MNN {found}"


def disk_usage(path: Path) -> int:
    """Bytes on disk under ``path`` (symbolic links not followed)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total
