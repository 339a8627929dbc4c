"""Models with big outputs: what recording them costs the coordinator.

For each output size (MiB per iteration, one relu'd float32 input of that size built with
MNN.expr), runs ``mnn-stress run`` on it for a few iterations with values stored and without,
and samples the coordinator every 20 ms: its peak private memory (RssAnon: the rings it shares
with its workers are not its own) and RSS, the run's wall time, iterations per second, and
whether every iteration's row reached the disk. Before issue 23 a 16 MiB output hung the
coordinator at once (its memory growing ~66 MiB/s, SIGTERM ignored).

Usage: .venv/bin/python bench/big_outputs.py [--sizes 16,64,256] [--iterations 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]
MIB = 1 << 20


def build_model(folder: Path, mib: int) -> Path:
    """A 1 x C x 1024 x 1024 float32 input relu'd: C * 4 MiB out (built in a subprocess, so
    this process never loads MNN)."""
    path = folder / f"out{mib}.mnn"
    code = (
        "import sys, MNN.expr as F\n"
        f"x = F.placeholder([1, {mib // 4}, 1024, 1024], F.NCHW, F.float); x.name = 'x'\n"
        "y = F.relu(x); y.name = 'y'\n"
        f"F.save([y], {str(path)!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return path


def private_memory(pid: int) -> tuple[int, int]:
    """(RssAnon, VmRSS) of ``pid`` in bytes; (0, 0) once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0, 0
    values = {line.split(":")[0]: int(line.split()[1]) << 10 for line in lines if "kB" in line}
    return values.get("RssAnon", 0), values.get("VmRSS", 0)


def measure(scenario: Path, out: Path) -> dict[str, float]:
    started = time.monotonic()
    run = subprocess.Popen(
        [sys.executable, "-m", "stress", "run", str(scenario), "--out", str(out)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak_anon = peak_rss = 0
    while run.poll() is None:
        anon, rss = private_memory(run.pid)
        peak_anon, peak_rss = max(peak_anon, anon), max(peak_rss, rss)
        time.sleep(0.02)
    rows = ds.dataset(str(out / "iterations"), format="parquet").count_rows()
    return {
        "exit": run.returncode,
        "seconds": time.monotonic() - started,
        "anon_mib": peak_anon / MIB,
        "rss_mib": peak_rss / MIB,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,256", help="output sizes in MiB")
    parser.add_argument("--iterations", type=int, default=6, help="iterations per thread")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mnn-stress-big-"))
    print(f"{'MiB':>5} {'values':>7} {'exit':>4} {'rows':>5} {'wall s':>7} {'it/s':>6} "
          f"{'peak private MiB':>17} {'peak RSS MiB':>13}")  # fmt: skip
    for mib in (int(size) for size in args.sizes.split(",")):
        model = build_model(folder, mib)
        for stored in (False, True):
            scenario = folder / f"out{mib}-{int(stored)}.yaml"
            scenario.write_text(
                f"name: out{mib}\nmodel: {model.name}\niterations: {args.iterations}\n"
                f"timeout: 300s\nrecord: {{max_value_bytes: {mib * MIB if stored else 0}}}\n"
                f"matrix:\n  threads: [{args.threads}]\n"
            )
            found = measure(scenario, folder / f"run-{mib}-{int(stored)}")
            expected = args.iterations * args.threads
            rate = expected / found["seconds"]
            print(f"{mib:>5} {'stored' if stored else 'no':>7} {found['exit']:>4} "
                  f"{found['rows']:>2}/{expected:<2} {found['seconds']:>7.1f} {rate:>6.2f} "
                  f"{found['anon_mib']:>17.0f} {found['rss_mib']:>13.0f}", flush=True)  # fmt: skip
    print(f"(runs kept in {folder}; wall time includes the clean reference pass and the summary)")


if __name__ == "__main__":
    main()
