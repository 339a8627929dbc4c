"""The one dtype table: numpy names, wire codes in ring records, MNN's type names, item sizes.

Every place that maps between numpy, MNN and the record format reads this table, so a dtype
is added or corrected once. Stdlib only: workers import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    """One element type as numpy, the ring records and MNN's two APIs name it."""

    name: str  # numpy's dtype name, also what Parquet rows and model descriptions say
    chars: str  # numpy's one-letter codes (``dtype.char``: cheaper than ``dtype.name``)
    itemsize: int
    code: int  # in ring records; 0 is "unknown"
    halide: str | None  # MNN.Halide_Type_<halide> (Session API)
    expr: str | None  # MNN.expr.<expr> (Module API)
    feedable: bool = False  # both APIs take inputs of this type correctly (MNN 3.6.1)


TABLE: tuple[DType, ...] = (
    DType("unknown", "", 1, 0, None, None),
    DType("float32", "f", 4, 1, "Float", "float", feedable=True),
    # expr.const reads float64 and int64 arrays as float32 / int32 bytes in MNN 3.6.1 (wrong
    # values, no error), so they are not fed as inputs.
    DType("float64", "d", 8, 2, "Double", "double"),
    DType("int32", "i", 4, 3, "Int", "int", feedable=True),
    DType("int64", "lq", 8, 4, "Int64", "int64"),
    DType("uint8", "B", 1, 5, "Uint8", "uint8", feedable=True),
    DType("int8", "b", 1, 6, "Int8", "int8"),
    DType("float16", "e", 2, 7, None, None),
)

UNKNOWN = TABLE[0]
BY_NAME = {d.name: d for d in TABLE}
BY_CODE = {d.code: d for d in TABLE}
BY_CHAR = {char: d for d in TABLE for char in d.chars}
FEEDABLE = tuple(d.name for d in TABLE if d.feedable)


def by_name(name: str) -> DType:
    """The entry for a numpy dtype name; ``UNKNOWN`` for names MNN cannot produce."""
    return BY_NAME.get(name, UNKNOWN)


def itemsize(name: str) -> int:
    return by_name(name).itemsize
