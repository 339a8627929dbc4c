"""Model files on disk: a path the user gives is checked before anything opens it (a symlink
loop, a folder, a FIFO or an unreadable file is a ModelError, not a traceback or a hang), and
files are hashed in chunks, never read whole (an ONNX model can be gigabytes)."""

from __future__ import annotations

import hashlib
import os
import stat
from functools import cache
from pathlib import Path

from stress.errors import ModelError

CHUNK_BYTES = 1 << 20
SUFFIXES = (".mnn", ".onnx")


def model_path(ref: str, base_dir: Path, where: str = "model") -> Path:
    """The regular, readable file ``ref`` names (relative to ``base_dir``), symlinks resolved;
    ModelError naming the path when it is anything else."""
    given = (base_dir / ref).expanduser()
    try:
        path = given.resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: a symlink loop before Python 3.13
        raise ModelError(
            f"model path {given} cannot be resolved: {getattr(exc, 'strerror', None) or exc}",
            key=where,
            fix="a symlink on that path points (through others) back at itself: fix the link",
        ) from exc
    if path.suffix not in SUFFIXES:
        return path  # the caller refuses it with the built-in names
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ModelError(
            f"model file not found: {path} ({exc.strerror})",
            key=where,
            fix="check the path; relative paths are taken from the scenario's folder",
        ) from exc
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, socket or device)"
        raise ModelError(
            f"model path {path} is {kind}",
            key=where,
            fix=f"point model: at a {path.suffix} file",
        )
    _check_readable(path, where)
    return path


def _check_readable(path: Path, where: str) -> None:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        raise ModelError(
            f"cannot read the model file {path}: {exc.strerror}",
            key=where,
            fix="make it readable for this user (chmod), or copy it somewhere readable",
        ) from exc


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB chunks; remembered while its inode, size,
    mtime and ctime stay the same (a rewrite that puts the mtime back still moves the ctime),
    so a model hashed at load is not hashed again for the manifest."""
    found = path.stat()
    return _sha256(str(path), found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


@cache
def _sha256(path: str, inode: int, size: int, mtime_ns: int, ctime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
