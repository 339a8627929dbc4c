"""What sharing one ring between a worker's threads costs: IterationWriter.write per record,
without the lock (one thread, as the worker does), with the lock uncontended, and with the
lock in 4 threads writing at once (one writer each, as ``threads: 4`` does).

Records are the tiny model's (one 8x6x6 float32 output); the ring's pages are touched before
timing and it is drained between chunks, outside the timing.

Usage: .venv/bin/python bench/ring_lock.py [--records 200000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stress.contract import ring  # noqa: E402
from stress.contract.protocol import IterationWriter  # noqa: E402

CHUNK = 20_000
RING_BYTES = 64 << 20  # holds a chunk (~26 MB of tiny records) with room to spare


def timed(records: int, threads: int, locked: bool) -> float:
    """ns per record, all threads together."""
    fd = ring.create(RING_BYTES)
    writer, reader = ring.RingWriter(fd), ring.RingReader(fd)
    os.close(fd)
    lock = threading.Lock() if locked else None
    output = np.zeros((1, 8, 6, 6), np.float32)
    warm = IterationWriter(writer)
    for i in range(2 * RING_BYTES // 1300):  # two laps: every page is touched before timing
        warm.write((i, i, 1000, 0, 0, 0, 0, 0), [output])
        if i % 1000 == 0:
            reader.drain(max_bytes=1 << 40)
    reader.drain(max_bytes=1 << 40)
    spent = 0.0
    per_thread = CHUNK // threads
    writers = [IterationWriter(writer, lock) for _ in range(threads)]
    for start in range(0, records, CHUNK):

        def produce(thread: int, first: int = start) -> None:
            write = writers[thread].write
            for i in range(first, first + per_thread):
                write((i, i, 1000, 0, 0, thread, 0, 0), [output])

        workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
        begin = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        spent += time.perf_counter() - begin
        reader.drain(max_bytes=1 << 40)
    return spent / (per_thread * threads * (records // CHUNK)) * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cases = [("1 thread, no lock", 1, False), ("1 thread, lock", 1, True)]
    cases += [("4 threads, lock", 4, True)]
    print(f"# {os.cpu_count()} cores; median of {args.repeats}; ns per record (tiny output)")
    for name, threads, locked in cases:
        runs = [timed(args.records, threads, locked) for _ in range(args.repeats)]
        print(
            f"{name:20s} {statistics.median(runs):8.0f} ns  (range {min(runs):.0f}-{max(runs):.0f})"
        )


if __name__ == "__main__":
    main()
