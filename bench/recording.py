"""Recording throughput: worker records -> ring -> decode -> row buffer -> Parquet on disk.

Two figures, both with the coordinator's own code (``decode_run`` as
``WorkerProcess.read`` calls it, ``IterationBuffer`` flushed every ``FLUSH_S`` as the recorder
does, ``PartWriter``):

- ``core``: records are produced up front (not timed); the timed part is everything the
  coordinator does per row, so the figure is how many rows/s one coordinator core can take;
  ``core + live grades`` adds the grading of each part's rows for the live view.
- ``end to end``: ``--producers`` processes write records into their own rings as fast as they
  can (the workers' ``IterationWriter``, no MNN) while this process drains, decodes and writes
  them; the figure is rows on disk / wall time from the first record to the last part written.
  Each producer's rate alone is measured first, so it is visible whether the producers or the
  coordinator set the pace.

Output size defaults to the tiny model's (8x6x6 float32, 1152 bytes). "digests and statistics
only" is a run whose ``record.max_value_bytes`` is 0; "values stored" keeps every output.

Usage: .venv/bin/python bench/recording.py [--rows 400000] [--elements 288] [--producers 2]
[--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stress.analysis.live_grades import LiveGrader  # noqa: E402
from stress.analysis.references import ReferenceOutput, References  # noqa: E402
from stress.contract import ring  # noqa: E402
from stress.contract.protocol import KIND_ITERATION, IterationWriter  # noqa: E402
from stress.factors import defaults  # noqa: E402
from stress.records import parts  # noqa: E402
from stress.records.iteration_batch import IterationBatch, decode_run  # noqa: E402
from stress.records.parts import PartWriter  # noqa: E402
from stress.records.recorder import FLUSH_S  # noqa: E402
from stress.records.row_buffer import IterationBuffer  # noqa: E402
from stress.records.schema import RowContext  # noqa: E402
from stress.records.statistics import digest  # noqa: E402

CHUNK = 10_000
RING_BYTES = 64 << 20
PRODUCER = """
import os, sys, time
import numpy as np
sys.path.insert(0, {repo!r})
from stress.contract import ring
from stress.contract.protocol import IterationWriter
fd, rows, elements = {fd}, {rows}, {elements}
writer = ring.RingWriter(fd)
produce = IterationWriter(writer).write
output = np.random.default_rng(fd).standard_normal((1, elements)).astype(np.float32)
begin = time.perf_counter()
for i in range(rows):
    produce((i, time.time_ns(), 1000, 1 << 20, 0, 0, 0, 0), [output])
print(rows / (time.perf_counter() - begin))
"""


def context(max_value_bytes: int, worker_id: int = 0) -> RowContext:
    values = {"run_id": "bench", "scenario": "bench", "variant_id": f"v{worker_id}"}
    values |= {**defaults(), "worker_id": worker_id, "pid": 1, "mnn_version": "x"}
    return RowContext(values, ("y",), max_value_bytes)


def record(buffer: IterationBuffer, row_context: RowContext, reader: ring.RingReader) -> int:
    """What the coordinator does with one worker's ring: drain, decode, buffer; rows added."""
    decoded: list = []
    for run in reader.drain_runs():
        if run.kind == KIND_ITERATION:
            decode_run(run, 1, 1, decoded)
    for item in decoded:
        if isinstance(item, IterationBatch):
            buffer.add_batch(row_context, item)
        else:
            buffer.add(row_context, item)
    return sum(len(item) if isinstance(item, IterationBatch) else 1 for item in decoded)


def live_grader(output: np.ndarray) -> LiveGrader:
    """A grader whose reference is the bench's output: every row graded exact."""
    reference = ReferenceOutput(
        "bench", "y", digest(output), "float32", output.shape, None, (None, None, None), 0, 1
    )
    return LiveGrader(References({("bench", "y"): reference}, {}), {})


def measure_core(
    rows: int, elements: int, max_value_bytes: int, directory: Path, graded: bool = False
) -> float:
    fd = ring.create(RING_BYTES)
    writer, reader = ring.RingWriter(fd), ring.RingReader(fd)
    os.close(fd)
    produce = IterationWriter(writer).write
    output = np.random.default_rng(0).standard_normal((1, elements)).astype(np.float32)
    buffer = IterationBuffer(PartWriter(directory), max_age_s=FLUSH_S)
    row_context = context(max_value_bytes)
    grades = live_grader(output).count if graded else lambda table: None
    spent = 0.0
    chunk = max(1, min(CHUNK, RING_BYTES // (4 * output.nbytes + 1024)))  # never fill the ring
    for start in range(0, rows, chunk):
        for i in range(start, min(rows, start + chunk)):
            produce((i, i, 1000, 0, 0, 0, 0, 0), [output])
        begin = time.perf_counter()
        record(buffer, row_context, reader)
        if buffer.due():
            grades(buffer.flush())
        spent += time.perf_counter() - begin
    begin = time.perf_counter()
    grades(buffer.flush())
    return rows / (spent + time.perf_counter() - begin)


def start_producer(rows: int, elements: int) -> tuple[subprocess.Popen, ring.RingReader]:
    fd = ring.create(RING_BYTES)
    code = PRODUCER.format(repo=str(REPO), fd=fd, rows=rows, elements=elements)
    process = subprocess.Popen(
        [sys.executable, "-c", code], pass_fds=(fd,), stdout=subprocess.PIPE, text=True
    )
    reader = ring.RingReader(fd)
    os.close(fd)
    return process, reader


def producer_alone(rows: int, elements: int) -> float:
    """One producer's rows/s with a reader that only frees its ring (no decoding)."""
    process, reader = start_producer(rows, elements)
    while process.poll() is None:
        reader.drain()
        time.sleep(0.002)
    return float(process.stdout.read())


def measure_end_to_end(
    rows: int, elements: int, max_value_bytes: int, directory: Path, producers: int
) -> float:
    started = [start_producer(rows, elements) for _ in range(producers)]
    contexts = [context(max_value_bytes, k) for k in range(producers)]
    buffer = IterationBuffer(PartWriter(directory), max_age_s=FLUSH_S)
    received, begin = 0, None
    while received < rows * producers:
        batch = sum(record(buffer, c, r) for (_, r), c in zip(started, contexts))
        if batch and begin is None:
            begin = time.perf_counter()
        received += batch
        if buffer.due():
            buffer.flush()
        if not batch:
            time.sleep(0.001)
    buffer.flush()
    elapsed = time.perf_counter() - (begin or 0.0)
    for process, _ in started:
        process.wait()
    on_disk = sum(pq.read_metadata(p).num_rows for p in parts.visible(directory))
    assert on_disk == rows * producers, (on_disk, rows * producers)
    return on_disk / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400_000, help="per producer")
    parser.add_argument("--elements", type=int, default=288)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="of each core measurement")
    args = parser.parse_args()
    size = f"{args.elements * 4} B outputs"
    with tempfile.TemporaryDirectory() as tmp:
        alone = producer_alone(args.rows, args.elements)
        print(f"one producer alone              {alone:>10,.0f} rows/s  ({size})")
        for label, cap in (("digests and statistics only", 0), ("values stored", 1 << 20)):
            where = Path(tmp) / label.replace(" ", "_")
            rates: dict[bool, list[float]] = {False: [], True: []}
            for repeat in range(args.repeats):  # alternated: the order costs nothing
                for graded in (False, True):
                    folder = where / f"core-{graded}-{repeat}"
                    rates[graded].append(
                        measure_core(args.rows, args.elements, cap, folder, graded)
                    )
            plain, graded = statistics.median(rates[False]), statistics.median(rates[True])
            print(f"core, {label:<27} {plain:>10,.0f} rows/s  ({size}, {args.rows:,} rows)")
            print(
                f"core + live grades, {label:<15} {graded:>10,.0f} rows/s  "
                f"({1e6 / graded - 1e6 / plain:+.2f} us a row; medians of {args.repeats})"
            )
            rate = measure_end_to_end(args.rows, args.elements, cap, where / "e2e", args.producers)
            print(
                f"end to end, {label:<21} {rate:>10,.0f} rows/s  "
                f"({args.producers} producers x {args.rows:,} rows)"
            )


if __name__ == "__main__":
    main()
