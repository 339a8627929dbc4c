"""Harness overhead and crash turnaround, measured in one run.

For each model and API: iterations/s of one mnn-stress worker (steady state, from the rows'
timestamps) versus a bare Python loop making the same MNN calls (bench/bare_loop.py),
alternated REPEATS times; prints the median rates, the median and range of the per-pair
ratios, and the added time per iteration. Then the time from a worker's
death (injected SIGSEGV) to its replacement's first iteration.

Usage: .venv/bin/python bench/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from stress.models.resolve import resolve_model  # noqa: E402

CASES = [
    ("tiny", "session", 30000),
    ("tiny", "module", 30000),
    ("three_input", "session", 300),
    ("three_input", "module", 300),
]


def bare(api: str, path: str, n: int) -> float:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bare_loop.py"), api, path, str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def harness(model: str, api: str, n: int, tmp: Path, fault: str | None = None) -> Path:
    scenario = tmp / f"{model}-{api}.yaml"
    scenario.write_text(
        f"name: bench\nmodel: {model}\niterations: {n}\nmax_crashes: 5\n"
        f"matrix:\n  api: [{api}]\n  num_thread: [1]\n"
    )
    out = Path(tempfile.mkdtemp(dir=tmp))
    os.rmdir(out)
    env = dict(os.environ, **({"MNN_STRESS_TEST_FAULT": fault} if fault else {}))
    subprocess.run(
        [sys.executable, "-m", "stress", "run", str(scenario), "--out", str(out), "--workers", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
    )
    return out


def steady_rate(run_dir: Path) -> float:
    ts = ds.dataset(str(run_dir / "iterations")).to_table(columns=["ts"])["ts"].to_numpy()
    ts = ts.astype("int64")
    return (len(ts) - 1) / ((ts.max() - ts.min()) / 1e9)


def turnaround(tmp: Path, repeats: int) -> list[tuple[float, float]]:
    """(death detected -> first new iteration, last old iteration -> first new) in seconds."""
    results = []
    for _ in range(repeats):
        run_dir = harness("tiny", "session", 4000, tmp, fault="segv@2000")
        rows = (
            ds.dataset(str(run_dir / "iterations"))
            .to_table(columns=["worker_id", "ts"])
            .to_pandas()
        )
        event = ds.dataset(str(run_dir / "events")).to_table().to_pandas().iloc[0]
        first_new = rows[rows.worker_id == 1].ts.min()
        last_old = rows[rows.worker_id == 0].ts.max()
        results.append(
            ((first_new - event.ts).total_seconds(), (first_new - last_old).total_seconds())
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    print(
        f"# machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; "
        f"repeats {repeats}, alternating bare / harness"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(
            f"{'model':<12} {'api':<8} {'bare it/s':>10} {'harness it/s':>13} "
            f"{'ratio':>6} {'range':>13} {'overhead/it':>12}"
        )
        for model, api, n in CASES:
            path = resolve_model(model, REPO).path
            pairs = []
            for _ in range(repeats):
                pairs.append((bare(api, path, n), steady_rate(harness(model, api, n, tmp))))
            ratios = sorted(h / b for b, h in pairs)
            b = statistics.median(p[0] for p in pairs)
            h = statistics.median(p[1] for p in pairs)
            print(
                f"{model:<12} {api:<8} {b:>10.0f} {h:>13.0f} {statistics.median(ratios):>6.3f} "
                f"{ratios[0]:>6.3f}-{ratios[-1]:<6.3f} {(1 / h - 1 / b) * 1e6:>9.2f} us"
            )
        samples = turnaround(tmp, repeats)
        detected = statistics.median(s[0] for s in samples)
        gap = statistics.median(s[1] for s in samples)
        print(
            f"crash turnaround (median of {repeats}): death detected -> replacement's first "
            f"iteration {detected * 1000:.0f} ms; last iteration before the death -> first "
            f"after {gap * 1000:.0f} ms"
        )


if __name__ == "__main__":
    main()
