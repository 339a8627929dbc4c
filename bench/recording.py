"""Coordinator-side recording throughput: ring drain -> decode -> row buffer -> Parquet.

Worker records are produced up front (not timed); the timed part is everything the coordinator
does per row, so the figure says how many rows/s one coordinator core can take before workers
wait on their rings. Output size defaults to the tiny model's (8x6x6 float32, 1152 bytes).

Usage: .venv/bin/python bench/recording.py [--rows 200000] [--elements 288]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stress.contract import ring  # noqa: E402
from stress.contract.protocol import KIND_ITERATION, IterationWriter, decode_iteration  # noqa: E402
from stress.factors import defaults  # noqa: E402
from stress.parts import PartWriter  # noqa: E402
from stress.records import IterationBuffer, RowContext  # noqa: E402

CHUNK = 10_000


def measure(rows: int, elements: int, max_value_bytes: int, directory: Path) -> float:
    fd = ring.create(64 << 20)
    writer, reader = ring.RingWriter(fd), ring.RingReader(fd)
    os.close(fd)
    produce = IterationWriter(writer).write
    output = np.random.default_rng(0).standard_normal((1, elements)).astype(np.float32)
    buffer = IterationBuffer(PartWriter(directory))
    context = RowContext(
        {
            "run_id": "bench",
            "scenario": "bench",
            "variant_id": "v0",
            **defaults(),
            "worker_id": 0,
            "pid": 1,
            "mnn_version": "x",
        },
        ("y",),
        max_value_bytes,
    )
    spent = 0.0
    for start in range(0, rows, CHUNK):
        for i in range(start, min(rows, start + CHUNK)):
            produce((i, i, 1000, 0, 0, 0, 0), [output])
        begin = time.perf_counter()
        for kind, payload in reader.drain():
            if kind == KIND_ITERATION:
                buffer.add(context, decode_iteration(payload, 1))
        if buffer.due():
            buffer.flush()
        spent += time.perf_counter() - begin
    begin = time.perf_counter()
    buffer.flush()
    return rows / (spent + time.perf_counter() - begin)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--elements", type=int, default=288)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, cap in (("values stored", 1 << 20), ("digests and statistics only", 0)):
            rate = measure(args.rows, args.elements, cap, Path(tmp) / label.replace(" ", "_"))
            print(
                f"{label:<30} {rate:>10,.0f} rows/s  ({args.elements * 4} B outputs, "
                f"{args.rows:,} rows)"
            )


if __name__ == "__main__":
    main()
