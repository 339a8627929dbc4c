"""The model cache (``$MNN_STRESS_CACHE``, default ``~/.cache/mnn-stress``): built-in models,
converted ONNX files and the wheel's backends, per MNN version.

Every entry is written whole or not at all (a hidden temporary file in its folder, synced,
then renamed), so a full disk or a killed build leaves nothing half-written. Each cached model
``X.mnn`` has a record ``X.json`` (what it holds, its size, mtime and sha256) written after it,
and is checked against it before use: a damaged or unrecorded model is built again (said once
on stderr), never handed to workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stress.cache_root import CACHE_VAR, cache_dir, make
from stress.errors import ModelError, where_stored
from stress.models import ModelInfo
from stress.models.files import sha256_of

# Cached models up to this size are hashed again at every use: ~0.1 s at the ~0.7 GB/s of
# sha256 measured on a shared 2-core machine. Larger ones are hashed again only when their
# size or mtime differs from the record (a truncation, a rewrite), not on every load.
REHASH_BYTES = 64 << 20
_WRITABLE = f"make it writable for this user, or set {CACHE_VAR} to a writable folder"
# After a failed build: can this much more than the build had written be written here?
ROOM_MARGIN_BYTES = 1 << 20


def folder(*parts: str) -> Path:
    """``cache_dir()/parts``, made if missing; ModelError when it cannot be."""
    path = cache_dir().joinpath(*parts)
    try:
        make(path)
    except (FileExistsError, NotADirectoryError) as exc:
        blocker = _first_file(path)
        raise ModelError(
            f"is a file, not a folder, so the model cache folder {path} cannot be made",
            file=str(blocker),
            fix=f"move that file away, or set {CACHE_VAR} to a folder",
        ) from exc
    except OSError as exc:
        raise ModelError(
            f"cannot make this model cache folder: {exc.strerror}",
            file=str(path),
            fix=_WRITABLE,
        ) from exc
    return path


def _first_file(path: Path) -> Path:
    """The first component of ``path`` that exists and is not a folder."""
    for part in reversed(path.parents):
        if part.exists() and not part.is_dir():
            return part
    return path


def storage_error(exc: OSError, where: Path) -> ModelError:
    """A write to the cache refused: name the folder, and for a full disk (or a file-size
    limit) its file system and the free space."""
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ModelError(
            f"cannot write to the model cache: {exc.strerror}",
            file=str(where),
            fix=_WRITABLE,
        )
    mount, free = where_stored(where)
    room = f"{free / 2**20:.1f} MiB free on {mount}" if free is not None else f"on {mount}"
    return ModelError(
        f"cannot write to the model cache: {exc.strerror or exc} ({room})",
        file=str(where),
        fix=f"free space there (or raise `ulimit -f`), or set {CACHE_VAR} to a writable "
        "folder with room",
    )


@contextlib.contextmanager
def writing(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final`` to write into: synced and renamed to ``final`` when
    the block ends, removed when it raises. A refused write is a ModelError (storage_error)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".", suffix=f".tmp{final.suffix}", dir=final.parent)
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would differ from every other cached file
        os.close(fd)
    except OSError as exc:
        raise storage_error(exc, final.parent) from exc
    temporary = Path(name)
    try:
        yield temporary
        _sync(temporary)
        os.replace(temporary, final)
        _sync(final.parent)
    except OSError as exc:
        raise storage_error(exc, final.parent) from exc
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(final: Path, text: str) -> None:
    with writing(final) as temporary:
        temporary.write_text(text)


def read_json(path: Path) -> Any | None:
    """A cached JSON file, or None when it is missing or damaged (it is then made again)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        say(f"the cached {path} cannot be read ({exc}): making it again")
        return None


def check_room(partial: Path, where: Path) -> None:
    """After a failed build into ``partial``: raise storage_error when the file system (or
    ``ulimit -f``) would refuse the bytes the build had written and a margin more, so a
    full disk is not reported as a bad model. Returns when the room is there."""
    try:
        size = partial.stat().st_size
        fd = os.open(partial, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return  # nothing to tell by
    try:
        os.posix_fallocate(fd, 0, size + ROOM_MARGIN_BYTES)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise storage_error(exc, where) from exc
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Stamp:
    """A cached model file as it was written: its size, mtime and sha256."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Stamp:
        found = path.stat()
        return cls(found.st_size, found.st_mtime_ns, sha256_of(path))

    def problem(self, path: Path) -> str | None:
        """Why the file at ``path`` is not the one recorded (None: it is)."""
        try:
            found = path.stat()
        except OSError as exc:
            return f"cannot be read ({exc.strerror})"
        if found.st_size != self.size:
            return f"is {found.st_size} bytes, not the {self.size} recorded"
        if found.st_size > REHASH_BYTES and found.st_mtime_ns == self.mtime_ns:
            return None
        if sha256_of(path) != self.sha256:
            return "does not match its recorded sha256"
        return None


def read_entry(model: Path) -> ModelInfo | None:
    """The cached model at ``model`` when it and its record are intact; None when it is not
    cached. A damaged entry is said on stderr, and then built again by the caller."""
    record = model.with_suffix(".json")
    if not record.exists() and not model.exists():
        return None
    try:
        data = json.loads(record.read_text())
        info, stamp = ModelInfo.from_dict(data["model"]), Stamp(**data["stamp"])
    except FileNotFoundError:
        problem: str | None = "has no record of its size and sha256"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problem = f"has a damaged record {record.name} ({type(exc).__name__}: {exc})"
    else:
        problem = stamp.problem(model)
    if problem is None:
        return dataclasses.replace(info, path=str(model))  # the cache may have moved
    say(f"the cached model {model} {problem}: building it again")
    return None


def write_entry(model: Path, info: ModelInfo) -> None:
    """Record the model just written at ``model`` (after it: a crash between leaves a model
    without a record, which is built again)."""
    stamp = Stamp.of(model)
    record = {"model": info.to_dict(), "stamp": asdict(stamp)}
    write_text(model.with_suffix(".json"), json.dumps(record))


def say(line: str) -> None:
    """A repair of the cache, said on stderr (it happens once: the entry is then whole)."""
    print(f"mnn-stress: {line}", file=sys.stderr, flush=True)
