"""A soak of the bundled scenarios, watched from outside: is the coordinator fit for a night?

Runs ``mnn-stress run`` for a given time (default 10 minutes) and samples the coordinator
every few seconds: resident memory, open files, and the part files in ``iterations/``. At the
end it reports the RSS slope (least squares over the samples after the first minute, and over
each minute's lowest sample: the floor a leak would lift), rows
written, part files written in all (the part sequence), the most seen at once and those left
after the final compaction, and the disk the run directory uses.

Usage: .venv/bin/python bench/soak.py [--duration 10m] [--every 5] [--keep DIR] [SCENARIO...]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stress.analysis.dataset import iterations_table  # noqa: E402
from stress.records.diskbudget import disk_usage  # noqa: E402
from stress.records.parts import listed  # noqa: E402
from stress.scenario import parse_duration  # noqa: E402


def sample(process: psutil.Process, out: Path) -> tuple[float, int, int, int, int]:
    """(time, coordinator RSS, its USS (private: without the shared worker rings), its open
    files, part files in iterations/ now)."""
    with process.oneshot():
        memory, files = process.memory_full_info(), process.num_fds()
    return time.monotonic(), memory.rss, memory.uss, files, len(listed(out / "iterations"))


def slope_mib_per_hour(samples: list[tuple], column: int, skip_s: float) -> float:
    """Least-squares slope of one memory column over the samples after ``skip_s``."""
    start = samples[0][0]
    points = [(s[0] - start, s[column]) for s in samples if s[0] - start >= skip_s]
    return _slope(points)


def floor_slope_mib_per_hour(samples: list[tuple], column: int, skip_s: float) -> float:
    """The same over each minute's lowest sample: memory a merge or a full buffer holds for
    a moment lifts the plain slope by when it happens to peak; a leak lifts the floor too."""
    start, floors = samples[0][0], {}
    for s in samples:
        if s[0] - start >= skip_s:
            minute = int((s[0] - start) // 60)
            floors[minute] = min(floors.get(minute, (0, float("inf"))), (s[0] - start, s[column]),
                                 key=lambda point: point[1])  # fmt: skip
    return _slope(list(floors.values()))


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return cov / var * 3600 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenarios", nargs="*", default=[str(REPO / "scenarios")])
    parser.add_argument("--duration", default="10m")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--keep", type=Path, help="run directory to keep (default: a temp one)")
    parser.add_argument("--samples", type=Path, help="also write every sample to this CSV file")
    args = parser.parse_args()
    seconds = parse_duration(args.duration)
    temporary = None if args.keep else tempfile.mkdtemp(prefix="mnn-stress-soak-")
    out = args.keep or Path(temporary) / "run"  # type: ignore[arg-type]
    command = [sys.executable, "-m", "stress", "run", *args.scenarios, "--out", str(out)]
    command += ["--duration", f"{seconds:g}s", "--progress-every", "60s"]
    print(" ".join(command), flush=True)
    begun = time.monotonic()
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    coordinator = psutil.Process(run.pid)
    samples = []
    time.sleep(args.every)  # past the interpreter's start
    while run.poll() is None:
        with contextlib.suppress(psutil.Error, OSError):  # between two of its files
            samples.append(sample(coordinator, out))
        time.sleep(args.every)
    wall = time.monotonic() - begun
    if args.samples:
        lines = ["seconds,rss_bytes,uss_bytes,open_files,parts"]
        lines += [f"{s[0] - begun:.1f},{s[1]},{s[2]},{s[3]},{s[4]}" for s in samples]
        args.samples.write_text("\n".join(lines) + "\n")
    report(out, samples, wall, run.returncode)
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)


def report(out: Path, samples: list, wall: float, code: int) -> None:
    parts = listed(out / "iterations")
    written = max((p.last + 1 for p in parts), default=0)
    rows = iterations_table(out, columns=["iteration"]).num_rows
    print(f"exit {code} after {wall:,.0f} s wall; {len(samples)} samples")
    if not samples:
        return
    for name, column in (("RSS", 1), ("USS", 2)):
        memory = [s[column] / 2**20 for s in samples]
        slope = slope_mib_per_hour(samples, column, 60)
        floor = floor_slope_mib_per_hour(samples, column, 60)
        print(
            f"coordinator {name}: first {memory[0]:,.0f} MiB, max {max(memory):,.0f} MiB, "
            f"last {memory[-1]:,.0f} MiB; slope after the first minute {slope:+,.1f} MiB/hour "
            f"(of each minute's lowest: {floor:+,.1f} MiB/hour)"
        )
    print(f"open files: min {min(s[3] for s in samples)}, max {max(s[3] for s in samples)}")
    print(f"rows written: {rows:,} ({rows / wall:,.0f}/s over the wall time)")
    print(
        f"iteration part files: {written:,} written, at most {max(s[4] for s in samples)} "
        f"at once, {len(parts)} after the final compaction"
    )
    print(f"events part files after compaction: {len(listed(out / 'events'))}")
    print(f"disk used by the run directory: {disk_usage(out) / 2**20:,.1f} MiB")


if __name__ == "__main__":
    main()
