"""Arrow rows as Python values without pandas. pyarrow turns a nanosecond timestamp into a
``datetime`` only through pandas (a test extra, not a dependency: a plain install has none),
so timestamp columns are cut to microseconds, ``datetime``'s own resolution, first."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def python_rows(table: pa.Table) -> list[dict[str, Any]]:
    """``table.to_pylist()``, whether pandas is installed or not."""
    return in_microseconds(table).to_pylist()


def in_microseconds(table: pa.Table) -> pa.Table:
    """The table with each nanosecond timestamp column truncated to microseconds."""
    fields = [_coarser(field) for field in table.schema]
    if all(a is b for a, b in zip(fields, table.schema)):
        return table
    return table.cast(pa.schema(fields, table.schema.metadata), safe=False)


def _coarser(field: pa.Field) -> pa.Field:
    kind = field.type
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        return field.with_type(pa.timestamp("us", kind.tz))
    return field
