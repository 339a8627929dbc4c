"""Input arrays: seeded (the same seed, name and plan give the same bytes on every run) or read
from a .npy/.npz file. Files are read with numpy's own format code and never unpickled."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np

from stress.contract.protocol import InputPlan

FILE_SUFFIXES = (".npy", ".npz")
# What zipfile raises for a damaged, encrypted or oddly compressed archive (BadZipFile also
# for a member whose CRC does not match): all mean "not a valid .npz" to the caller.
_ZIP_FAULTS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
_MAGNITUDE_DRAWS: dict[str, Callable[[np.random.Generator, list[int]], np.ndarray]] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "uniform": lambda rng, shape: rng.uniform(-1.0, 1.0, shape),
    "zeros": lambda rng, shape: np.zeros(shape),
    "ones": lambda rng, shape: np.ones(shape),
}


def make_input(plan: InputPlan, seed: int) -> np.ndarray:
    """One C-contiguous array of the plan's dtype and shape."""
    if plan.file is not None:
        return _from_file(plan, plan.file)
    rng = np.random.default_rng([seed, zlib.crc32(plan.name.encode())])
    dtype = np.dtype(plan.dtype)
    if plan.distribution == "large":
        values = _large(rng, plan.shape, dtype)
    elif plan.distribution == "denormal":
        values = _denormal(rng, plan.shape, dtype)
    else:
        values = _scaled(rng, plan, dtype)
    return np.ascontiguousarray(values.astype(dtype))


def make_inputs(plans: list[InputPlan], seed: int) -> list[np.ndarray]:
    return [make_input(plan, seed) for plan in plans]


def _scaled(rng: np.random.Generator, plan: InputPlan, dtype: np.dtype) -> np.ndarray:
    if plan.distribution not in _MAGNITUDE_DRAWS:
        raise ValueError(f"input {plan.name!r}: unknown distribution {plan.distribution!r}")
    values = _MAGNITUDE_DRAWS[plan.distribution](rng, plan.shape) * plan.scale
    return np.round(values) if dtype.kind in "iu" else values


def _large(rng: np.random.Generator, shape: list[int], dtype: np.dtype) -> np.ndarray:
    """Floats: standard normal x max/8 (clipped to +-8 sigma, so always finite), so a sum of
    a few or a product of two overflows to inf. Ints: magnitudes in [range/4, range/2), random
    signs where the type has them, so two of one sign (signed) or four (unsigned) sum past it."""
    if dtype.kind == "f":
        return np.clip(rng.standard_normal(shape), -8.0, 8.0) * (float(np.finfo(dtype).max) / 8)
    if dtype.kind not in "iu":
        raise ValueError(f"no large values for dtype {dtype}")
    info = np.iinfo(dtype)
    quarter = (int(info.max) - int(info.min) + 1) // 4
    values = rng.integers(quarter, 2 * quarter, shape, dtype=np.int64)
    return values * rng.choice([-1, 1], shape) if info.min < 0 else values


def _denormal(rng: np.random.Generator, shape: list[int], dtype: np.dtype) -> np.ndarray:
    """Floats: random non-zero subnormals of either sign, made from their bits (exponent 0,
    mantissa > 0), so none rounds to 0 or to a normal number. Ints have none: zeros."""
    if dtype.kind in "iu":
        return np.zeros(shape, dtype)
    if dtype.kind != "f":
        raise ValueError(f"no subnormal values for dtype {dtype}")
    bits = np.dtype(f"uint{dtype.itemsize * 8}")
    mantissa = rng.integers(1, 1 << np.finfo(dtype).nmant, shape, dtype=bits)
    sign = rng.integers(0, 2, shape, dtype=bits) << (dtype.itemsize * 8 - 1)
    return (mantissa | sign).view(dtype.newbyteorder("="))


def _from_file(plan: InputPlan, path: str) -> np.ndarray:
    """The file's array, checked again: it may have changed since the scenario was validated.
    Only the byte order is converted (values unchanged); the type never is."""
    try:
        array = read_array(path, plan.name)
    except (OSError, KeyError) as exc:
        raise ValueError(f"{path}: input {plan.name!r}: {exc!r}; gone since validation") from exc
    dtype = np.dtype(plan.dtype)
    if array.dtype.newbyteorder("=") != dtype or list(array.shape) != list(plan.shape):
        raise ValueError(
            f"{path}: input {plan.name!r} holds {array.dtype} {list(array.shape)}, the "
            f"plan needs {dtype} {list(plan.shape)}; the file changed after validation"
        )
    return np.ascontiguousarray(array, dtype=dtype)


def read_header(path: str, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype an input file holds, from its header alone (a .npz member is not
    decompressed). KeyError: a .npz without ``name``; ValueError: not a valid file."""
    with _member(path, name) as stream:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError(f"the .npy format version {version} is not read")
    return shape, dtype


def read_array(path: str, name: str) -> np.ndarray:
    """The whole array (object arrays are refused, never unpickled). ValueError: corrupt."""
    with _member(path, name) as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def npz_keys(path: str) -> list[str]:
    """The names of the arrays a .npz file holds."""
    with zipfile.ZipFile(path) as archive:
        return [member.removesuffix(".npy") for member in archive.namelist()]


@contextmanager
def _member(path: str, name: str) -> Iterator[IO[bytes]]:
    """A .npy file, or the member ``name`` of a .npz (zip) file, open for reading."""
    if not path.endswith(".npz"):
        with open(path, "rb") as file:
            yield file
        return
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as member:
            yield member
    except _ZIP_FAULTS as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
