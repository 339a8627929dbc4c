"""The ``input_lifetime`` layers: what happens to the arrays a thread hands to MNN.

Each layer takes the thread's own arrays (the baseline ``copy``: made once, owned, kept
alive, never touched), hands MNN something else in ``feed``, and may act on it after MNN
received it and before the run. Everything here is harness code, outside the drivers' MNN
wrappers: a failure of ours is never recorded as MNN's. ``facts`` prove to tests, from inside
the worker, that each action really happened.
"""

from __future__ import annotations

import ctypes
import gc
import weakref
from typing import Any

import numpy as np

from stress.contract.stages import Binding, Layer, ThreadContext

POISON = 0xFF  # every byte: NaN in floats, -1 in signed ints: visible in any output
PAGE = 4096
PROT_READ_WRITE = 0x1 | 0x2
MAP_PRIVATE_ANONYMOUS = 0x02 | 0x20
MAP_FAILED = ctypes.c_void_p(-1).value
MAPS_CHECKED = 8  # unmapped ranges looked up in /proc/self/maps (it costs ~100 us each)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    *(ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int),
    *(ctypes.c_int, ctypes.c_int, ctypes.c_long),
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def wrap_memory(address: int, like: np.ndarray) -> np.ndarray:
    """An ndarray over foreign memory at ``address`` with ``like``'s shape and dtype."""
    buffer = (ctypes.c_char * like.nbytes).from_address(address)
    return np.frombuffer(buffer, dtype=like.dtype).reshape(like.shape)


def is_mapped(address: int) -> bool:
    """Whether any mapping of this process covers ``address`` (from /proc/self/maps)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            start, end = (int(x, 16) for x in line.split(None, 1)[0].split("-"))
            if start <= address < end:
                return True
    return False


class Borrowed(Layer):
    """Hands MNN read-only views of memory the worker's threads share (a ``bytes`` object per
    input, made once): arrays that neither own their data nor may be written."""

    def __init__(self, inner: Binding, context: ThreadContext) -> None:
        super().__init__(inner)
        self.shared = context.shared
        self.views: list[np.ndarray] | None = None

    def feed(self, inputs: list[np.ndarray]) -> None:
        if self.views is None:
            self.views = [self._view(i, a) for i, a in enumerate(inputs)]
        self.inner.feed(self.views)

    def _view(self, index: int, array: np.ndarray) -> np.ndarray:
        data = self.shared.setdefault(("borrowed", index), array.tobytes())
        return np.frombuffer(data, dtype=array.dtype).reshape(array.shape)


class Mutated(Layer):
    """Hands MNN the thread's arrays, then adds 1 to every element before the run (restored
    before the next hand-off): an engine still reading them computes on other values."""

    def __init__(self, inner: Binding) -> None:
        super().__init__(inner)
        self.arrays: list[np.ndarray] = []
        self.pristine: list[np.ndarray] = []
        self.changed_before_run = 0

    def feed(self, inputs: list[np.ndarray]) -> None:
        if not self.arrays:
            self.pristine = inputs
            self.arrays = [a.copy() for a in inputs]
        for array, pristine in zip(self.arrays, self.pristine):
            np.copyto(array, pristine)
        self.inner.feed(self.arrays)
        for array in self.arrays:
            array += 1

    def run(self) -> int:
        self.changed_before_run += any(
            not np.array_equal(a, p) for a, p in zip(self.arrays, self.pristine)
        )
        return self.inner.run()

    def facts(self) -> dict[str, Any]:
        return {**self.inner.facts(), "mutated_before_run": self.changed_before_run}


class Freed(Layer):
    """Hands MNN arrays over ``malloc``'d memory, then poisons and ``free``s it before the run
    and ``malloc``s the same size again, poisoned (glibc usually returns the same block):
    an engine still reading the freed memory reads POISON."""

    def __init__(self, inner: Binding) -> None:
        super().__init__(inner)
        self.holds: list[tuple[int, int]] = []  # (address, size) of the poisoned re-allocations
        self.freed = self.reused = self.poisoned = 0

    def feed(self, inputs: list[np.ndarray]) -> None:
        self._release_holds()
        blocks = [(malloc(a.nbytes), a) for a in inputs]
        arrays = [wrap_memory(address, a) for address, a in blocks]
        for array, (_, pristine) in zip(arrays, blocks):
            np.copyto(array, pristine)
        self.inner.feed(arrays)
        del arrays
        for address, pristine in blocks:
            ctypes.memset(address, POISON, pristine.nbytes)
            free(address)
            again = malloc_poisoned(pristine.nbytes)
            self.holds.append((again, pristine.nbytes))
            self.freed += 1
            self.reused += again == address
            self.poisoned += ctypes.string_at(again, 1)[0] == POISON

    def _release_holds(self) -> None:
        for address, _ in self.holds:
            free(address)
        self.holds = []

    def facts(self) -> dict[str, Any]:
        return {
            **self.inner.facts(),
            "freed": self.freed,
            "freed_reused": self.reused,
            "freed_poisoned": self.poisoned,
        }


class Unmapped(Layer):
    """Hands MNN arrays over pages of their own (``mmap``), then unmaps them before the run:
    an engine still reading them faults (SIGSEGV)."""

    def __init__(self, inner: Binding) -> None:
        super().__init__(inner)
        self.unmapped = self.verified = 0

    def feed(self, inputs: list[np.ndarray]) -> None:
        mappings = [(_mmap(a.nbytes), a) for a in inputs]
        arrays = [wrap_memory(address, a) for (address, _), a in mappings]
        for array, pristine in zip(arrays, inputs):
            np.copyto(array, pristine)
        self.inner.feed(arrays)
        del arrays
        for (address, size), _ in mappings:
            if _libc.munmap(address, size) != 0:
                raise OSError(ctypes.get_errno(), "munmap failed")
            self.unmapped += 1
            if self.unmapped <= MAPS_CHECKED:
                self.verified += not is_mapped(address)

    def facts(self) -> dict[str, Any]:
        return {**self.inner.facts(), "unmapped": self.unmapped, "unmapped_verified": self.verified}


class GcChurn(Layer):
    """Hands MNN fresh arrays each iteration, drops them and forces a collection before the
    run: whatever MNN did not copy or keep a reference to is gone."""

    def __init__(self, inner: Binding) -> None:
        super().__init__(inner)
        self.made = self.collected = 0

    def feed(self, inputs: list[np.ndarray]) -> None:
        handed = [a.copy() for a in inputs]
        alive = [weakref.ref(a) for a in handed]  # of exactly what MNN was given
        self.inner.feed(handed)
        del handed
        gc.collect()
        self.made += len(alive)
        self.collected += sum(ref() is None for ref in alive)

    def facts(self) -> dict[str, Any]:
        return {**self.inner.facts(), "churned": self.made, "churned_collected": self.collected}


class Strided(Layer):
    """Hands MNN non-contiguous views: every second element along the last axis longer than
    1 of a buffer twice as long (an input with no such axis cannot be non-contiguous)."""

    def __init__(self, inner: Binding) -> None:
        super().__init__(inner)
        self.arrays: list[np.ndarray] | None = None

    def feed(self, inputs: list[np.ndarray]) -> None:
        if self.arrays is None:
            self.arrays = [strided_copy(a) for a in inputs]
        self.inner.feed(self.arrays)


class Fortran(Layer):
    """Hands MNN Fortran-ordered copies (column-major: not C-contiguous for rank >= 2)."""

    def __init__(self, inner: Binding) -> None:
        super().__init__(inner)
        self.arrays: list[np.ndarray] | None = None

    def feed(self, inputs: list[np.ndarray]) -> None:
        if self.arrays is None:
            self.arrays = [np.asfortranarray(a) for a in inputs]
        self.inner.feed(self.arrays)


def strided_copy(array: np.ndarray) -> np.ndarray:
    """The same values as a strided view of a larger buffer (see ``Strided``)."""
    axes = [axis for axis, length in enumerate(array.shape) if length > 1]
    if not axes:
        return array.copy()
    axis = axes[-1]
    shape = list(array.shape)
    shape[axis] *= 2
    buffer = np.zeros(shape, array.dtype)
    index = [slice(None)] * array.ndim
    index[axis] = slice(None, None, 2)
    view = buffer[tuple(index)]
    view[...] = array
    return view


def malloc(size: int) -> int:
    """libc's ``malloc`` (never numpy's allocator); MemoryError when it fails."""
    address = _libc.malloc(max(size, 1))
    if not address:
        raise MemoryError(f"malloc({size}) failed")
    return address


def malloc_poisoned(size: int) -> int:
    address = malloc(size)
    ctypes.memset(address, POISON, size)
    return address


def free(address: int) -> None:
    _libc.free(address)


def _mmap(size: int) -> tuple[int, int]:
    length = max(PAGE, -(-size // PAGE) * PAGE)
    address = _libc.mmap(None, length, PROT_READ_WRITE, MAP_PRIVATE_ANONYMOUS, -1, 0)
    if address in (None, MAP_FAILED):
        raise OSError(ctypes.get_errno(), f"mmap of {length} bytes failed")
    return address, length


LAYERS = {
    "borrowed": Borrowed,
    "mutated": Mutated,
    "freed": Freed,
    "unmapped": Unmapped,
    "gc_churn": GcChurn,
    "strided": Strided,
    "fortran": Fortran,
}


def wrap(value: str, binding: Binding, context: ThreadContext) -> Binding:
    """The layer for an ``input_lifetime`` value other than ``copy``."""
    layer = LAYERS[value]
    return layer(binding, context) if layer is Borrowed else layer(binding)
