"""The same scenario run on this machine and through ``--ray local``: rows per second both
ways (issue 26's goal: the Ray path keeps at least 0.9 of the local throughput) and the
start-up cost (the time to the first row).

Each run is a fresh ``mnn-stress run`` with a time budget and no reference; rows/s is the rows
written over the span of their timestamps (first row to last), so the start-up and the final
packing are not in it; the time to the first row is from the command's start. Runs alternate
(local, ray, local, ...) so a change of the machine's load touches both.

Usage: .venv/bin/python bench/ray_overhead.py [--model tiny] [--duration 20s] [--workers 2]
       [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]


def run_once(folder: Path, scenario: Path, duration: str, workers: int, ray: bool) -> dict:
    out = folder / ("ray" if ray else "local")
    command = [sys.executable, "-m", "stress", "run", str(scenario), "--out", str(out)]
    command += ["--duration", duration, "--workers", str(workers), "--no-reference"]
    command += ["--ray", "local"] if ray else []
    began = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    took = time.time() - began
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr}")
    ts = ds.dataset(str(out / "iterations"), format="parquet").to_table(columns=["ts"])["ts"]
    first, last = (x.value / 1e9 for x in (pc.min(ts), pc.max(ts)))
    return {
        "rows": len(ts),
        "rows_per_s": len(ts) / max(1e-9, last - first),
        "first_row_s": first - began,
        "wall_s": took,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--duration", default="20s")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scenario = folder / "bench.yaml"
        scenario.write_text(
            f"name: bench\nmodel: {args.model}\nseed: 0\ntimeout: 30s\n"
            "matrix:\n  api: [session, module]\n"
        )
        print(f"model {args.model}, {args.duration}, --workers {args.workers}, machine: "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")  # fmt: skip
        ratios = []
        for repeat in range(args.repeats):
            measured = {}
            for ray in (False, True):
                sub = folder / f"{repeat}-{int(ray)}"
                sub.mkdir()
                measured[ray] = run_once(sub, scenario, args.duration, args.workers, ray)
                m = measured[ray]
                print(
                    f"{'ray  ' if ray else 'local'} rows {m['rows']:>9,}  "
                    f"{m['rows_per_s']:>9,.0f} rows/s  first row after {m['first_row_s']:.1f} s"
                    f"  wall {m['wall_s']:.1f} s"
                )
            ratios.append(measured[True]["rows_per_s"] / measured[False]["rows_per_s"])
            print(f"ray / local throughput: {ratios[-1]:.3f}")
        print(f"ratios: {', '.join(f'{r:.3f}' for r in ratios)}")


if __name__ == "__main__":
    main()
