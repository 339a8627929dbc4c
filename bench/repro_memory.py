"""Peak memory of a ``mnn-stress repro`` script against its iteration count.

Runs one variant of a built-in model for a few iterations with ``mnn-stress run``, writes its
repro script (``repro --runs 0 --iterations N``) for each N given, runs each script in a fresh
process and prints its peak RSS (the kernel's ``ru_maxrss`` for that child alone, from
``os.wait4``), its wall time, its exit status and what it printed. A script that keeps every
iteration's outputs grows by the output size per iteration (three_input: 390 KiB); one that
compares as it goes stays flat.

Usage: .venv/bin/python bench/repro_memory.py [--model three_input] [--api session]
       [--threads 1] [--iterations 1,1000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def stress(*args: str) -> str:
    """``mnn-stress ARGS`` from this tree; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "stress", *args], cwd=REPO, capture_output=True, text=True
    )
    if done.returncode not in (0, 1):  # 1: the run found something, which is fine here
        raise SystemExit(f"mnn-stress {args[0]} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def make_run(folder: Path, model: str, api: str, threads: int) -> tuple[Path, str]:
    """A three-iteration run of one variant; the run directory and the variant's id."""
    scenario = folder / "scenario.yaml"
    scenario.write_text(
        f"name: repro_memory\nmodel: {model}\niterations: 3\n"
        f"matrix:\n  api: [{api}]\n  threads: [{threads}]\n"
    )
    run_dir = folder / "run"
    stress("run", str(scenario), "--out", str(run_dir))
    (variant,) = json.loads(stress("summary", str(run_dir), "--json"))["variants"]
    return run_dir, variant["variant_id"]


def peak_rss(script: Path) -> dict[str, object]:
    """Run ``script`` in a fresh process: its peak RSS (MiB), wall time, exit and last line."""
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    printed = child.stdout.read().decode() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    counts = [line for line in printed.splitlines() if line.startswith("repro: {")]
    return {
        "rss_mib": usage.ru_maxrss * 1024 / MIB,  # ru_maxrss is in KiB on Linux
        "seconds": time.monotonic() - started,
        "exit": child.returncode,
        "counts": counts[-1] if counts else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="three_input", help="a built-in model")
    parser.add_argument("--api", default="session", choices=["session", "module"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", default="1,1000", help="iterations per thread, a list")
    parser.add_argument("--repeats", type=int, default=1, help="fresh runs of each script")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mnn-stress-repro-memory-"))
    run_dir, variant_id = make_run(folder, args.model, args.api, args.threads)
    print(f"{args.model}, {args.api} API, {args.threads} thread(s), variant {variant_id}")
    print(f"{'iterations':>10} {'peak RSS MiB':>13} {'wall s':>7} {'exit':>4}  printed")
    for iterations in (int(n) for n in args.iterations.split(",")):
        script = folder / f"repro-{iterations}" / "r.py"
        stress("repro", str(run_dir), variant_id, "--runs", "0", "--out", str(script),
               "--iterations", str(iterations))  # fmt: skip
        for _ in range(args.repeats):
            found = peak_rss(script)
            print(f"{iterations:>10} {found['rss_mib']:>13.0f} {found['seconds']:>7.1f} "
                  f"{found['exit']:>4}  {found['counts']}", flush=True)  # fmt: skip
    print(f"(run and scripts kept in {folder})")


if __name__ == "__main__":
    main()
