"""Crash signatures: a night's worker deaths grouped by their cause, so 5,000 crashes show
their few causes, each with its count, first and last occurrence and the factor values it
occurred under.

A signature is the kind of death, its signal or exception type, and the innermost frames of
the Python stack (file name and function; line numbers left out so that one cause stays one
signature), or of the native stack where there is only that (valgrind memcheck's errors);
with gdb's backtrace of a crash (``native_stack``), also the innermost native frames where the
signal struck, so one Python call that crashes in two places in MNN is two signatures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from stress.analysis.pyrows import python_rows
from stress.analysis.summary_model import Signature
from stress.factors import REGISTRY, shown

TOP_FRAMES = 3
_PLUMBING = {"contextlib.py", "threading.py", "runpy.py"}  # frames that tell no cause
_FRAME = re.compile(r'File "(?:[^"]*/)?([^"/]+)", line \d+ in (\S+)')
_TRACEBACK_FRAME = re.compile(r'File "(?:[^"]*/)?([^"/]+)", line \d+, in (\S+)')
_NATIVE_FRAME = re.compile(r"^  (\S+) \((?:[^():]*/)?([^():/]+)(?::\d+)?\)$", re.M)
_VALGRIND = "vgpreload"  # valgrind's own replacements (malloc, memmove): not the cause
_SIGNAL_HANDLER = "<signal handler called>"  # gdb: frames below it are where the signal struck
_GDB_FRAME = re.compile(
    r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(.*?\)(?: (?:at|from) (?:[^\s]*/)?([^\s/:]+))?", re.M
)


def frames(stack: str | None) -> tuple[str, ...]:
    """The innermost TOP_FRAMES frames as 'file:function', innermost first: from a
    faulthandler dump (innermost first already) or a traceback (innermost last)."""
    if not stack:
        return ()
    dump = _FRAME.findall(stack)
    inner_first = dump if dump else list(reversed(_TRACEBACK_FRAME.findall(stack)))
    if not inner_first:  # a native stack (innermost first), up to its first `auxwhat`
        native = _NATIVE_FRAME.findall(stack.split("\n\n")[0])
        inner_first = [(f, fn) for fn, f in native if not f.startswith(_VALGRIND)]
    named = [f"{file}:{function}" for file, function in inner_first if file not in _PLUMBING]
    return tuple(named[:TOP_FRAMES])


def native_frames(native_stack: str | None) -> tuple[str, ...]:
    """From gdb's backtrace of a crashed worker: the innermost TOP_FRAMES distinct frames below
    ``<signal handler called>`` (faulthandler's own frames are above it), as 'file:function';
    () when the stack has no such thread (a hang, or a note saying why there is no stack)."""
    if not native_stack or _SIGNAL_HANDLER not in native_stack:
        return ()
    struck = native_stack.split(_SIGNAL_HANDLER, 1)[1].split("\nThread ", 1)[0]
    named: list[str] = []
    for function, file in _GDB_FRAME.findall(struck):
        frame = f"{file or '?'}:{function}"
        if not named or named[-1] != frame:
            named.append(frame)
    return tuple(named[:TOP_FRAMES])


def where(group: Signature) -> str:
    """A signature's frames in one line: Python innermost first, then the native ones."""
    shown = " < ".join(group.frames) or "no stack"
    native = group.native_frames
    return f"{shown} [native: {' < '.join(native)}]" if native else shown


def varied(group: Signature) -> str:
    """The factor values a signature occurred under, where they are not just the default, as
    a scenario writes them (``threads=2|4 rlimit_as_headroom_mib=off``)."""
    return " ".join(
        f"{name}={'|'.join(map(shown, values))}"
        for name, values in group.factors.items()
        if name not in REGISTRY or values != [REGISTRY[name].default]
    )


def cause(kind: str, signal: str | None, message: str | None) -> str:
    """The signal, or the exception type a message starts with (past our MNNError wrapper)."""
    if signal:
        return signal
    text = (message or "").removeprefix("MNNError: ")
    head = text.split(":", 1)[0].strip()
    return head if head.isidentifier() else kind


def signatures(events: pa.Table, kinds: Iterable[str]) -> list[dict[str, Any]]:
    """Death events of ``kinds`` grouped by signature, the most frequent first."""
    wanted = set(kinds)
    groups: dict[tuple, dict[str, Any]] = {}
    for event in python_rows(events):
        if event["kind"] not in wanted:
            continue
        key = (event["kind"], cause(event["kind"], event["signal"], event["message"]))
        python, native = frames(event["stack"]), native_frames(event.get("native_stack"))
        group = groups.setdefault((*key, python, native), _new_group(*key, python, native))
        group["count"] += 1
        group["first"] = min(group["first"] or event["ts"], event["ts"])
        group["last"] = max(group["last"] or event["ts"], event["ts"])
        group["variants"].add(event["variant_id"])
        for name in REGISTRY:
            group["factors"].setdefault(name, set()).add(event[name])
    found = sorted(groups.values(), key=lambda g: (-g["count"], g["first"]))
    for group in found:
        group["variants"] = sorted(group["variants"])
        group["factors"] = {k: sorted(v, key=str) for k, v in group["factors"].items()}
        group["first"] = group["first"].isoformat(timespec="seconds")
        group["last"] = group["last"].isoformat(timespec="seconds")
    return found


def _new_group(kind: str, why: str, python: tuple, native: tuple) -> dict[str, Any]:
    return {
        "kind": kind,
        "cause": why,
        "frames": list(python),
        "native_frames": list(native),
        "count": 0,
        "first": None,
        "last": None,
        "variants": set(),
        "factors": {},
    }
