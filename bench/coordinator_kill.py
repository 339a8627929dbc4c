"""How much a coordinator SIGKILL loses: rows within about a second of their iteration?

Starts a run of the tiny model (two variants, two workers), SIGKILLs the coordinator at a
random moment after it is going, and measures, per variant, the time between the kill and
the newest row on disk; then resumes the run and reads how many iterations the resumed
segment had to run again (``iterations_rerun``) and whether every (variant, thread) is gapless.

Usage: .venv/bin/python bench/coordinator_kill.py [--kills 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow.compute as pc  # noqa: E402

from stress.analysis.dataset import iterations_table  # noqa: E402

SCENARIO = "name: killed\nmodel: tiny\ntimeout: 10s\nmatrix:\n  api: [session, module]\n"


def one_kill(folder: Path, delay_s: float) -> tuple[float, int, bool]:
    """(seconds between the kill and the newest row, iterations rerun, gapless after resume)."""
    scenario = folder / "killed.yaml"
    scenario.write_text(SCENARIO)
    out = folder / "run"
    command = [sys.executable, "-m", "stress", "run", str(scenario), "--out", str(out)]
    command += ["--duration", "40s", "--workers", "2", "--no-reference"]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (out / "iterations").is_dir() or not any((out / "iterations").iterdir()):
        time.sleep(0.05)
    time.sleep(delay_s)
    killed_at = time.time()
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    newest = pc.max(iterations_table(out, columns=["ts"])["ts"]).as_py().timestamp()
    subprocess.run(
        [sys.executable, "-m", "stress", "run", "--resume", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    rerun = json.loads((out / "manifest.json").read_text())["segments"][-1]["iterations_rerun"]
    table = iterations_table(out, columns=["variant_id", "thread", "iteration"])
    groups = (
        table.group_by(["variant_id", "thread"])
        .aggregate([("iteration", "count"), ("iteration", "count_distinct"), ("iteration", "max")])
        .to_pylist()
    )
    gapless = all(
        g["iteration_count"] == g["iteration_count_distinct"] == g["iteration_max"] + 1
        for g in groups
    )
    return killed_at - newest, rerun, gapless


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    lost, reruns, clean = [], [], 0
    for attempt in range(args.kills):
        with tempfile.TemporaryDirectory() as tmp:
            seconds, rerun, gapless = one_kill(Path(tmp), rng.uniform(2.0, 8.0))
        lost.append(seconds)
        reruns.append(rerun)
        clean += gapless
        print(
            f"kill {attempt + 1}: newest row {seconds:.2f} s before the kill; "
            f"{rerun:,} iterations rerun; gapless after resume: {gapless}",
            flush=True,
        )
    print(
        f"newest row before the kill: median {statistics.median(lost):.2f} s, "
        f"max {max(lost):.2f} s over {len(lost)} kills; iterations rerun: median "
        f"{statistics.median(reruns):,.0f}, max {max(reruns):,}; gapless: {clean}/{len(lost)}"
    )


if __name__ == "__main__":
    main()
