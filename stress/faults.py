"""Test-only fault injection inside a worker, to prove the coordinator survives real deaths.

Enabled only by the environment variable ``MNN_STRESS_TEST_FAULT`` in the coordinator's
environment (no scenario key can set it). Syntax: ``KIND@N`` fires at iteration N;
``KIND@N+`` at every iteration from N on. Kinds: segv (a real invalid memory read), abort,
hang, raise, exit, corrupt (publish a record no worker could write).
"""

from __future__ import annotations

import ctypes
import os
import struct
import time
from typing import Any

ENV_VAR = "MNN_STRESS_TEST_FAULT"
KINDS = ("segv", "abort", "hang", "raise", "exit", "corrupt")
NEVER = 1 << 62


class InjectedFault(RuntimeError):
    """Raised by the ``raise`` fault: an exception the worker does not expect."""


def parse(spec: str | None) -> tuple[str, int, bool]:
    """(kind, iteration, repeats) for a spec; ('', NEVER, False) for none."""
    if not spec:
        return "", NEVER, False
    kind, _, at = spec.partition("@")
    repeats = at.endswith("+")
    if kind not in KINDS or not at.rstrip("+").isdigit():
        raise ValueError(
            f"bad {ENV_VAR} {spec!r}: expected KIND@N or KIND@N+ with KIND in {', '.join(KINDS)}"
        )
    return kind, int(at.rstrip("+")), repeats


def trigger(kind: str, ring: Any) -> None:
    if kind == "segv":
        ctypes.string_at(0)
    elif kind == "abort":
        os.abort()
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "raise":
        raise InjectedFault("injected test fault")
    elif kind == "exit":
        os._exit(7)
    elif kind == "corrupt":
        offset = ring.begin(8, 1)
        struct.pack_into("<I", ring.mm, offset - 16, 24)  # a size that is not 16-aligned
        ring.commit()
