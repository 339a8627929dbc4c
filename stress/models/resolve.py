"""Turn a scenario's ``model:`` reference into a ModelInfo, building or converting as needed.

Built-in models and converted ONNX files are cached per MNN version under the cache
directory (``stress.models.cache``); nothing is downloaded.
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
from pathlib import Path

from stress import SOURCE_ROOT
from stress.errors import ModelError
from stress.factors.convert import NONE as NO_FLAGS
from stress.factors.convert import converter_args
from stress.models import ModelInfo, files
from stress.models import cache as model_cache
from stress.models.builtin import BUILDER_VERSION, BUILTINS
from stress.models.cache import cache_dir
from stress.models.files import SUFFIXES, sha256_of
from stress.versions.releases import mnn_version

__all__ = ["available_backends", "cache_dir", "converted_with", "mnn_version", "resolve_model"]

PROBE_TIMEOUT_S = 600


def resolve_model(ref: str, base_dir: Path, *, where: str = "model") -> ModelInfo:
    """Resolve a built-in name, or a ``.mnn``/``.onnx`` path relative to ``base_dir``."""
    if ref in BUILTINS:
        return _builtin(ref)
    path = files.model_path(ref, base_dir, where)
    if path.suffix not in SUFFIXES:
        raise ModelError(
            f"unknown model {ref!r}",
            key=where,
            fix=f"use a built-in model ({', '.join(BUILTINS)}) or a path ending in .mnn or .onnx",
        )
    if path.suffix == ".onnx":
        return _converted(ref, str(path))
    return _inspected(ref, str(path), "mnn")


@cache
def _builtin(name: str) -> ModelInfo:
    target = builtin_file(name)
    found = model_cache.read_entry(target)
    if found is None:
        found = _info(name, str(target), "builtin", _atomic_probe("build", name, target))
        model_cache.write_entry(target, found)
    return found


def builtin_file(name: str) -> Path:
    """Where the built-in model ``name`` is cached for the installed MNN."""
    folder = model_cache.folder("models", f"mnn-{mnn_version()}")
    return folder / f"{name}-v{BUILDER_VERSION}.mnn"


# Bumped when conversion changes: 2 converts in a directory of its own, so files from
# conversions that raced in one directory (weights silently zeroed) are not reused.
CONVERTER_VERSION = 2


@cache
def _converted(ref: str, onnx_path: str, flags: str = NO_FLAGS) -> ModelInfo:
    """The ONNX file converted with the converter ``flags`` (``stress.factors.convert``),
    cached by the file's content and the flags."""
    digest = sha256_of(Path(onnx_path))[:16]
    if flags != NO_FLAGS:
        digest += "-f" + hashlib.sha256(flags.encode()).hexdigest()[:8]
    folder = model_cache.folder("onnx", f"mnn-{mnn_version()}")
    target = folder / f"{digest}-c{CONVERTER_VERSION}.mnn"
    found = model_cache.read_entry(target)
    if found is None:
        result = _atomic_probe("convert", onnx_path, target, *converter_args(flags))
        found = _info(ref, str(target), "onnx", result)
        model_cache.write_entry(target, found)
    return dataclasses.replace(found, ref=ref, extra={"onnx": onnx_path, "convert": flags})


def converted_with(model: ModelInfo, flags: str) -> ModelInfo:
    """``model`` (one that came from ONNX) converted again with the converter ``flags``."""
    return _converted(model.ref, model.extra["onnx"], flags)


@cache
def available_backends(model_path: str) -> tuple[str, ...]:
    """The backends the installed MNN wheel has (lower-case factor values), cached per MNN
    version; ``model_path`` is any model this MNN loads (createRuntime needs one)."""
    target = model_cache.folder("backends") / f"mnn-{mnn_version()}.json"
    found = model_cache.read_json(target)
    if not (isinstance(found, list) and all(isinstance(name, str) for name in found)):
        found = _probe("backends", model_path)["backends"]
        model_cache.write_text(target, json.dumps(found))
    return tuple(found)


@cache
def _inspected(ref: str, path: str, source: str) -> ModelInfo:
    return _info(ref, path, source, _probe("inspect", path))


def _atomic_probe(action: str, arg: str, target: Path, *options: str) -> dict:
    """Build or convert into a temporary file, then rename, so a crash or a full disk leaves
    no half model; a failure the disk explains (MNN crashes on the file it could not finish)
    is said as one."""
    with model_cache.writing(target) as temporary:
        try:
            return _probe(action, arg, str(temporary), *options)
        except ModelError:
            model_cache.check_room(temporary, target.parent)
            raise


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
        try:
            result = json.loads(result_file.read_text())
        except (OSError, ValueError) as exc:  # no answer, or half of one (a full disk)
            raise ModelError(
                f"MNN died while trying to {action} {args[0]} (exit {done.returncode})"
                f": {done.stderr.strip()[-500:]}",
                fix="check that the file is a valid model for this MNN version",
            ) from exc
    if not result["ok"]:
        raise ModelError(
            f"cannot {action} {args[0]}: {result['error']}",
            fix="check that the file is a valid model for this MNN version",
        )
    return result


def _probe_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE_ROOT, env.get("PYTHONPATH")]))
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
