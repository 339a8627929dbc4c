"""What memcheck=on costs: per model, the same variant with and without valgrind, through the
real coordinator (one run each, one worker, no reference); prints per-iteration p50 and p99
latency, the slowdown, and each run's wall time (valgrind's start-up with MNN loaded under
it is most of the difference for short runs).

    .venv/bin/python bench/memcheck_cost.py [--iterations 20] [--models tiny,deep,three_input]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCENARIO = """\
name: cost_{model}_{memcheck}
model: {model}
iterations: {iterations}
timeout: 300s
workers: 1
matrix:
  memcheck: [{memcheck}]
"""


def measure(model: str, iterations: int, work: Path) -> list[dict]:
    """One run per memcheck value (one worker each), timed end to end, then summarised."""
    found = []
    for memcheck in ("off", "on"):
        path = work / f"{model}-{memcheck}.yaml"
        path.write_text(SCENARIO.format(model=model, iterations=iterations, memcheck=memcheck))
        out = work / f"run-{model}-{memcheck}"
        run = [sys.executable, "-m", "stress", "run", str(path), "--out", str(out)]
        started = time.perf_counter()
        subprocess.run([*run, "--no-reference"], check=True, capture_output=True, cwd=REPO)
        wall = time.perf_counter() - started
        summary = subprocess.run(
            [sys.executable, "-m", "stress", "summary", str(out), "--json"],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        (variant,) = json.loads(summary.stdout)["variants"]
        found.append(
            {
                "model": model,
                "memcheck": memcheck,
                "iterations": variant["iterations"],
                "p50_ms": round(variant["latency_p50_ms"], 3),
                "p99_ms": round(variant["latency_p99_ms"], 3),
                "run_wall_s": round(wall, 1),
                "memcheck_errors": variant["events"]["memcheck"],
            }
        )
    found[1]["slowdown_p50"] = round(found[1]["p50_ms"] / found[0]["p50_ms"], 1)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--models", default="tiny,deep,three_input")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for row in measure(model, args.iterations, Path(tmp)):
                print(json.dumps(row))


if __name__ == "__main__":
    main()
