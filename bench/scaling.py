"""Two workers against one: total iterations/s with the coordinator beside them.

Runs two scenario files of one variant each (the same model, API and knobs) with
``--workers 1`` (the variants one after the other) and ``--workers 2`` (side by side), and
compares total steady-state iterations/s from the rows' timestamps (bench/steady.py: the window
in which every worker ran). Also reports the coordinator's own CPU (user + system, sampled
until it exits) as a share of a core, and how many cores other processes kept busy meanwhile:
a row with others well above 0 is noise. Beside each pair it runs bench/bare_loop.py (the same
MNN calls, no harness) once alone and twice at once: the "bare" ratio is what the machine
itself gives two such processes, the ceiling for the harness's.

Usage: .venv/bin/python bench/scaling.py [--repeats 3] [--seconds 10] [--cases tiny:session,...]
                                         [--max-value-bytes 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from steady import window_rate  # noqa: E402

from stress.models.resolve import resolve_model  # noqa: E402

# Iterations/s of one worker, roughly: sets the iteration budget for --seconds.
RATE = {"tiny": 33_000, "three_input": 150, "deep": 100}
DEFAULT_CASES = "tiny:session,tiny:module,three_input:session,three_input:module"


def _busy_s() -> float:
    with open("/proc/stat") as stat:
        fields = list(map(int, stat.readline().split()[1:9]))
    return (sum(fields) - fields[3]) / os.sysconf("SC_CLK_TCK")


def run(
    model: str, api: str, workers: int, seconds: float, tmp: Path, max_value_bytes: int | None
) -> dict[str, float]:
    """One run of two one-variant scenarios; rates, coordinator CPU share, others' load."""
    iterations = int(RATE[model] * seconds)
    files = []
    for name in ("left", "right"):
        path = tmp / f"{name}.yaml"
        path.write_text(
            f"name: {name}\nmodel: {model}\niterations: {iterations}\ntimeout: 60s\n"
            f"matrix:\n  api: [{api}]\n  num_thread: [1]\n"
            + (
                ""
                if max_value_bytes is None
                else f"record:\n  max_value_bytes: {max_value_bytes}\n"
            )
        )
        files.append(str(path))
    out = Path(tempfile.mkdtemp(dir=tmp)) / "run"
    command = [sys.executable, "-m", "stress", "run", *files, "--out", str(out)]
    command += ["--workers", str(workers), "--no-reference"]
    busy, start = _busy_s(), time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    coordinator = psutil.Process(process.pid)
    samples = []  # (wall, coordinator CPU): its share of a core in the middle of the run
    while process.poll() is None:
        try:
            times = coordinator.cpu_times()
            samples.append((time.monotonic(), times.user + times.system))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    if process.wait() != 0:
        raise RuntimeError(process.stderr.read().decode()[-2000:])
    wall = time.monotonic() - start
    run_cpu = _children_cpu()  # the coordinator and its workers, all reaped by now
    table = ds.dataset(str(out / "iterations")).to_table(columns=["ts", "variant_id", "status"])
    if set(table["status"].to_pylist()) != {"ok"}:
        raise RuntimeError(f"{out}: not every iteration was ok")
    ts = table["ts"].to_numpy().astype("int64")
    variant = table["variant_id"].to_numpy(zero_copy_only=False)
    per_variant = [ts[variant == v] for v in sorted(set(variant))]
    if workers == 1:
        rate = statistics.mean(window_rate([stamps]) for stamps in per_variant)
    else:
        rate = window_rate(per_variant)
    others = max(0.0, (_busy_s() - busy) - run_cpu) / wall
    (t0, c0), (t1, c1) = samples[len(samples) * 3 // 10], samples[len(samples) * 7 // 10]
    return {"rate": rate, "coordinator": (c1 - c0) / (t1 - t0), "others": others}


def bare_pair(model: str, api: str, seconds: float) -> float:
    """Total it/s of two bare loops at once over one alone (each loop's own rate)."""
    path = resolve_model(model, REPO).path
    command = [sys.executable, str(REPO / "bench" / "bare_loop.py"), api, path]
    command.append(str(int(RATE[model] * seconds)))

    def rates(count: int) -> list[float]:
        started = [
            subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(count)
        ]
        return [float(p.communicate()[0].strip().splitlines()[-1]) for p in started]

    alone = rates(1)[0]
    together = sum(rates(2))
    _children_cpu()  # the loops' CPU is not the next run's
    return together / alone


_LAST_CHILDREN = [0.0]


def _children_cpu() -> float:
    """CPU of reaped descendants since the last call (the run's workers are reaped by it, and
    the run by us, so they count here)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    spent, _LAST_CHILDREN[0] = total - _LAST_CHILDREN[0], total
    return spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per variant with 1 worker")
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument(
        "--max-value-bytes",
        type=int,
        help="record.max_value_bytes (0: digests and statistics only)",
    )
    args = parser.parse_args()
    print(
        f"{'model':<12} {'api':<8} {'1 worker it/s':>14} {'2 workers it/s':>15} "
        f"{'ratio (range)':>20} {'bare ratio':>11} {'coord. CPU 1/2':>15} {'others':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            model, api = case.split(":")
            pairs, coordinator, others, bare = [], [], [], []
            for _ in range(args.repeats):
                bare.append(bare_pair(model, api, args.seconds / 2))
                one = run(model, api, 1, args.seconds, Path(tmp), args.max_value_bytes)
                two = run(model, api, 2, args.seconds, Path(tmp), args.max_value_bytes)
                pairs.append((one["rate"], two["rate"]))
                coordinator.append((one["coordinator"], two["coordinator"]))
                others += [one["others"], two["others"]]
            ratios = sorted(b / a for a, b in pairs)
            print(
                f"{model:<12} {api:<8} {statistics.median(a for a, _ in pairs):>14,.0f} "
                f"{statistics.median(b for _, b in pairs):>15,.0f} "
                f"{statistics.median(ratios):>7.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})    "
                f"{statistics.median(bare):>10.2f} "
                f"{statistics.median(c for c, _ in coordinator):>6.2f}/"
                f"{statistics.median(c for _, c in coordinator):<6.2f} "
                f"{statistics.median(others):>7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
