"""The world around the worker: memory it must share, CPU it must compete for, and what freed
memory looks like. Each is applied outside MNN's calls: in the worker's environment at launch
(``malloc_perturb``), or in the worker before its engine is built, kept until it ends
(``ballast_mib``, ``pressure_siblings``, ``cpu_hogs``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stress.contract.stages import Launch
from stress.factors.factor import Factor, Rule

Cleanup = Callable[[], None]
MAX_MIB = 1 << 20  # 1 TiB: beyond any machine this runs on; a typo, not a plan


def _perturb_malloc(value: int, launch: Launch) -> None:
    if value:
        launch.env["MALLOC_PERTURB_"] = str(value)


def _ballast(value: int, params: Mapping[str, Any]) -> Cleanup | None:
    """N MiB allocated and written before the loop, held until the worker ends."""
    if not value:
        return None
    held = [bytearray(b"\x01") * (value << 20)]  # every page written: resident
    return held.clear


def _hogs(value: int, params: Mapping[str, Any]) -> Cleanup | None:
    return _siblings(hogs=value) if value else None


def _pressure(value: int, params: Mapping[str, Any]) -> Cleanup | None:
    return _siblings(pressure=value, mib=params["pressure_mib"]) if value else None


def _siblings(hogs: int = 0, pressure: int = 0, mib: int = 0) -> Cleanup:
    from stress.worker import siblings

    started = siblings.start(hogs, pressure, mib)
    return lambda: siblings.stop(started)


def _pressure_needs_size(params: Mapping[str, Any]) -> str | None:
    siblings, mib = params["pressure_siblings"], params["pressure_mib"]
    if bool(siblings) != bool(mib):
        return (
            f"pressure_siblings={siblings} with pressure_mib={mib}: siblings need a size to "
            "allocate, and a size needs siblings"
        )
    return None


MALLOC_PERTURB = Factor(
    name="malloc_perturb",
    kind=int,
    default=0,
    minimum=0,
    maximum=255,
    doc="glibc's MALLOC_PERTURB_ for the worker: freed and fresh heap memory are filled with "
    "this byte (0: off), so a read of freed or uninitialised memory changes outputs.",
    launch=_perturb_malloc,
)

BALLAST_MIB = Factor(
    name="ballast_mib",
    kind=int,
    default=0,
    minimum=0,
    maximum=MAX_MIB,
    doc="MiB the worker allocates and writes before its loop and keeps resident.",
    before_loop=_ballast,
)

PRESSURE_SIBLINGS = Factor(
    name="pressure_siblings",
    kind=int,
    default=0,
    minimum=0,
    maximum=64,
    doc="Processes started with the worker (and ended with it) that keep allocating and "
    "writing pressure_mib MiB each, freeing and again, while it runs.",
    before_loop=_pressure,
    rules=(Rule(("pressure_siblings", "pressure_mib"), _pressure_needs_size),),
)

PRESSURE_MIB = Factor(
    name="pressure_mib",
    kind=int,
    default=0,
    minimum=0,
    maximum=MAX_MIB,
    doc="MiB each pressure sibling allocates and writes, over and over.",
)

CPU_HOGS = Factor(
    name="cpu_hogs",
    kind=int,
    default=0,
    minimum=0,
    maximum=256,
    doc="Busy-looping processes started with the worker and ended with it (oversubscription).",
    before_loop=_hogs,
)

FACTORS = (BALLAST_MIB, PRESSURE_SIBLINGS, PRESSURE_MIB, CPU_HOGS, MALLOC_PERTURB)
