"""Processes beside a worker: CPU hogs (busy loops) and memory pressure (allocate and touch N
MiB, free, again). Each is a child of the worker's main thread that Linux kills with SIGKILL
when the worker dies, however it dies (``PR_SET_PDEATHSIG``), so none outlives its worker (the
worker itself dies with the coordinator the same way). They run ``python -S -c``: no imports
beyond the standard library, started in milliseconds."""

from __future__ import annotations

import os
import subprocess
import sys

MARKER = "mnn-stress-sibling"  # in every sibling's command line, so tests and ps find them

_CODE = """
import ctypes, os, signal, sys, time
mode, mib, parent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker
if os.getppid() != parent:  # the worker died before prctl took effect
    sys.exit(0)
if mode == "hog":
    while True:
        pass
while True:
    block = bytearray(b"\\x01") * (mib << 20)  # every page written: resident
    time.sleep(0.05)
    del block
"""


def start(hogs: int, pressure: int, pressure_mib: int) -> list[subprocess.Popen]:
    """Start ``hogs`` busy processes and ``pressure`` allocating ones, from the calling
    (main) thread: the death signal follows the thread that started them."""
    parent = str(os.getpid())
    started = []
    for mode, count, mib in (("hog", hogs, 0), ("pressure", pressure, pressure_mib)):
        for _ in range(count):
            command = [sys.executable, "-S", "-c", _CODE, mode, str(mib), parent, MARKER]
            started.append(subprocess.Popen(command, stdin=subprocess.DEVNULL))
    return started


def stop(siblings: list[subprocess.Popen]) -> None:
    """End them when the worker ends normally (a dying worker's are killed by Linux)."""
    for sibling in siblings:
        sibling.kill()
    for sibling in siblings:
        sibling.wait()
