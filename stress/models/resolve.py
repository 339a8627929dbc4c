"""Turn a scenario's ``model:`` reference into a ModelInfo, building or converting as needed.

Built-in models and converted ONNX files are cached per MNN version under the cache
directory (``$MNN_STRESS_CACHE``, default ``~/.cache/mnn-stress``); nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path

from stress.errors import ModelError
from stress.factors.convert import NONE as NO_FLAGS
from stress.factors.convert import converter_args
from stress.models import ModelInfo
from stress.models.builtin import BUILDER_VERSION, BUILTINS

PROBE_TIMEOUT_S = 600


def cache_dir() -> Path:
    root = os.environ.get("MNN_STRESS_CACHE") or Path.home() / ".cache" / "mnn-stress"
    return Path(root)


def mnn_version() -> str:
    """The installed MNN's version, read from package metadata (no ``import MNN``)."""
    try:
        return metadata.version("MNN")
    except metadata.PackageNotFoundError as exc:
        raise ModelError(
            "MNN is not installed in this Python", fix="run ./run.sh, which installs it into .venv/"
        ) from exc


def resolve_model(ref: str, base_dir: Path, *, where: str = "model") -> ModelInfo:
    """Resolve a built-in name, or a ``.mnn``/``.onnx`` path relative to ``base_dir``."""
    if ref in BUILTINS:
        return _builtin(ref)
    path = (base_dir / ref).expanduser().resolve()
    if path.suffix not in (".mnn", ".onnx"):
        raise ModelError(
            f"unknown model {ref!r}",
            key=where,
            fix=f"use a built-in model ({', '.join(BUILTINS)}) or a path ending in .mnn or .onnx",
        )
    if not path.is_file():
        raise ModelError(
            f"model file not found: {path}",
            key=where,
            fix="check the path; relative paths are taken from the scenario's folder",
        )
    if path.suffix == ".onnx":
        return _converted(ref, str(path))
    return _inspected(ref, str(path), "mnn")


@cache
def _builtin(name: str) -> ModelInfo:
    target = cache_dir() / "models" / f"mnn-{mnn_version()}" / f"{name}-v{BUILDER_VERSION}.mnn"
    info_file = target.with_suffix(".json")
    if info_file.is_file() and target.is_file():
        return ModelInfo.from_dict(json.loads(info_file.read_text()))
    result = _atomic_probe("build", name, target)
    info = _info(name, str(target), "builtin", result)
    info_file.write_text(json.dumps(info.to_dict()))
    return info


# Bumped when conversion changes: 2 converts in a directory of its own, so files from
# conversions that raced in one directory (weights silently zeroed) are not reused.
CONVERTER_VERSION = 2


@cache
def _converted(ref: str, onnx_path: str, flags: str = NO_FLAGS) -> ModelInfo:
    """The ONNX file converted with the converter ``flags`` (``stress.factors.convert``),
    cached by the file's content and the flags."""
    digest = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()[:16]
    if flags != NO_FLAGS:
        digest += "-f" + hashlib.sha256(flags.encode()).hexdigest()[:8]
    target = cache_dir() / "onnx" / f"mnn-{mnn_version()}" / f"{digest}-c{CONVERTER_VERSION}.mnn"
    extra = {"onnx": onnx_path, "convert": flags}
    if target.is_file():
        return dataclasses.replace(_inspected(ref, str(target), "onnx"), extra=extra)
    result = _atomic_probe("convert", onnx_path, target, *converter_args(flags))
    return _info(ref, str(target), "onnx", result, **extra)


def converted_with(model: ModelInfo, flags: str) -> ModelInfo:
    """``model`` (one that came from ONNX) converted again with the converter ``flags``."""
    return _converted(model.ref, model.extra["onnx"], flags)


@cache
def available_backends(model_path: str) -> tuple[str, ...]:
    """The backends the installed MNN wheel has (lower-case factor values), cached per MNN
    version; ``model_path`` is any model this MNN loads (createRuntime needs one)."""
    target = cache_dir() / "backends" / f"mnn-{mnn_version()}.json"
    if target.is_file():
        return tuple(json.loads(target.read_text()))
    found = _probe("backends", model_path)["backends"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(found))
    return tuple(found)


@cache
def _inspected(ref: str, path: str, source: str) -> ModelInfo:
    return _info(ref, path, source, _probe("inspect", path))


def _atomic_probe(action: str, arg: str, target: Path, *options: str) -> dict:
    """Build or convert into a temporary file, then rename, so a crash leaves no half model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mnn", dir=target.parent)
    os.close(fd)
    try:
        result = _probe(action, arg, tmp, *options)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return result


def _probe(action: str, *args: str) -> dict:
    """Run the probe process; MNN's own chatter goes to /dev/null, the answer to a JSON file."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "stress.models.probe", action, *args, str(result_file)]
        done = subprocess.run(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env=_probe_env(),
        )
        if not result_file.is_file():
            raise ModelError(
                f"MNN died while trying to {action} {args[0]} (exit {done.returncode})"
                f": {done.stderr.strip()[-500:]}",
                fix="check that the file is a valid model for this MNN version",
            )
        result = json.loads(result_file.read_text())
    if not result["ok"]:
        raise ModelError(
            f"cannot {action} {args[0]}: {result['error']}",
            fix="check that the file is a valid model for this MNN version",
        )
    return result


def _probe_env() -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return env


def _info(ref: str, path: str, source: str, result: dict, **extra: str) -> ModelInfo:
    return ModelInfo.from_dict(
        {
            "ref": ref,
            "path": path,
            "source": source,
            "inputs": result["inputs"],
            "outputs": result["outputs"],
            "mnn_version": result["mnn_version"],
            "extra": extra,
        }
    )
