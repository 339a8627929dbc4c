"""Worker logs with a size cap: past it, a log keeps its head (how the worker started) and
its tail (how it ended, with faulthandler's stacks), and a line saying how much was cut.

The worker keeps writing through its own ``O_APPEND`` descriptor while the coordinator cuts
the file, so a line it writes during the cut itself may be lost; nothing else is.
"""

from __future__ import annotations

from pathlib import Path

HEAD_FRACTION = 8  # the head keeps 1/8 of the cap, the tail the rest


def cap(path: Path, max_bytes: int) -> int:
    """Cut the log at ``path`` down to ``max_bytes`` (head + marker + tail) if it is larger;
    returns how many bytes were cut (0: none, no such file, or the cut failed: a full disk
    must not stop the run over a log)."""
    try:
        size = path.stat().st_size
        return _cut(path, size, max_bytes) if size > max_bytes else 0
    except OSError:
        return 0


def _cut(path: Path, size: int, max_bytes: int) -> int:
    head = max_bytes // HEAD_FRACTION
    with open(path, "r+b") as log:
        log.seek(head)
        skipped = log.readline()  # the head ends at a line's end
        head += len(skipped)
        marker_room = 96
        tail_bytes = max(0, max_bytes - head - marker_room)
        log.seek(max(head, size - tail_bytes))
        tail = log.read()
        newline = tail.find(b"\n")  # the tail starts at a line's start
        if 0 <= newline < len(tail) - 1:
            tail = tail[newline + 1 :]
        cut = size - head - len(tail)
        marker = f"\n[mnn-stress: {cut:,} bytes of this log cut to keep it under {max_bytes:,}]\n"
        log.seek(head)
        log.write(marker.encode() + tail)
        log.truncate()
    return cut
