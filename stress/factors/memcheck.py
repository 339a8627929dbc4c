"""``memcheck``: the worker runs under valgrind's memcheck, so every invalid read, write or
free inside MNN (or numpy, or CPython) is reported with its native stack. CPython's own
allocator is switched off (``PYTHONMALLOC=malloc``) so valgrind sees every block, and the
suppressions kept in ``stress/memcheck/`` hide what CPython does on purpose. The coordinator
turns valgrind's XML into one event per error (``stress.memcheck.report``)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stress.contract.stages import Launch
from stress.factors.factor import Factor, Rule

SUPPRESSIONS = Path(__file__).resolve().parents[1] / "memcheck" / "python.supp"
XML_SUFFIX = ".memcheck.xml"  # next to the worker's log


def valgrind_command() -> list[str]:
    """valgrind's command line, writing its XML report next to the worker's log (``{log}``)."""
    return [
        shutil.which("valgrind") or "valgrind",
        "--tool=memcheck",
        "--leak-check=no",  # leaks show as resident-memory growth (drift), not here
        "--xml=yes",
        "--xml-file={log}" + XML_SUFFIX,
        f"--suppressions={SUPPRESSIONS}",
        "--num-callers=40",
        "--error-limit=no",
        "--read-inline-info=yes",
    ]


def _under_valgrind(value: str, launch: Launch) -> None:
    if value == "on":
        launch.prefix = valgrind_command()
        launch.env["PYTHONMALLOC"] = "malloc"


def _not_with_a_cap(params: Mapping[str, Any]) -> str | None:
    if params["memcheck"] == "off" or params["rlimit_as_headroom_mib"] is None:
        return None
    return (
        f"memcheck=on with rlimit_as_headroom_mib={params['rlimit_as_headroom_mib']}: valgrind "
        "reserves address space of its own, so the cap would starve valgrind, not MNN"
    )


def _no_valgrind(value: str) -> tuple[str, str] | None:
    if value == "off" or shutil.which("valgrind"):
        return None
    return (
        "memcheck=on needs valgrind, which is not installed (not on PATH)",
        "apt-get install valgrind (Debian, Ubuntu) or dnf install valgrind (Fedora), "
        "or leave memcheck off",
    )


MEMCHECK = Factor(
    name="memcheck",
    kind=str,
    default="off",
    choices=("off", "on"),
    doc="Run the worker under valgrind memcheck (PYTHONMALLOC=malloc): every invalid read, "
    "write or free becomes an event with its native stack. Measured 500-1,800x slower per "
    "iteration (MNN's SIMD kernels under valgrind): give such variants few iterations and a "
    "long timeout.",
    launch=_under_valgrind,
    unavailable=_no_valgrind,
    rules=(Rule(("memcheck", "rlimit_as_headroom_mib"), _not_with_a_cap),),
)

FACTORS = (MEMCHECK,)
