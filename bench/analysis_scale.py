"""Analysis at scale: what reading a run of millions of iteration rows costs.

The goal: 10 million iteration rows report in <= 10 s and <= 2 GiB peak RSS on a 2-core
machine, never loading a whole run into memory.

``generate`` writes a synthetic run (``bench/synthetic_run.py``). ``time`` runs an analysis
command (``--json``) in fresh processes and prints, per run, wall and CPU time and peak RSS (its
own rusage, from wait4), how many cores other processes kept busy meanwhile (a figure taken on
a busy machine is noise), the run's rows and size on disk, and the bare cost of starting Python
and importing the analysis. ``report`` exits 1 when it found anything other than exact or close
outcomes: that is its verdict, not a failure.

Usage: .venv/bin/python bench/analysis_scale.py generate OUT_DIR [--rows 10000000] [--seed 0]
                                                        [--part-rows 100000]
       .venv/bin/python bench/analysis_scale.py time OUT_DIR [--command summary|report]
                                                    [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthetic_run import PART_ROWS, generate  # noqa: E402

from stress.errors import StressError  # noqa: E402

# What each --command runs; "{run}" is the run directory.
COMMANDS = {"summary": ["summary", "{run}", "--json"], "report": ["report", "{run}", "--json"]}


@dataclass(frozen=True)
class Measurement:
    wall_s: float
    cpu_s: float  # the process's user + system time
    peak_bytes: int  # its peak RSS
    exit_code: int
    others_cores: float  # cores other processes kept busy meanwhile: above ~0.2, noise

    def line(self, label: str) -> str:
        return (
            f"{label:<18} {self.wall_s:6.2f} s wall  {self.cpu_s:6.2f} s cpu  "
            f"{self.peak_bytes / 2**20:7,.0f} MiB peak RSS  (others {self.others_cores:.2f} cores)"
        )


def measure(argv: list[str]) -> Measurement:
    """One fresh process, by its own rusage (wait4); its output is discarded, the tail of its
    stderr shown if it fails."""
    with tempfile.TemporaryFile() as stderr:
        busy, begin = _busy_cpu_s(), time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - begin
        cpu = usage.ru_utime + usage.ru_stime
        others = max(0.0, (_busy_cpu_s() - busy - cpu) / wall)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            stderr.seek(0)
            sys.stderr.write(stderr.read().decode(errors="replace")[-2000:])
    return Measurement(wall, cpu, usage.ru_maxrss * 1024, process.returncode, others)


def _busy_cpu_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def disk_usage(run_dir: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in run_dir.rglob("*") if p.is_file())


GOAL_S, GOAL_BYTES = 10.0, 2 << 30


def time_command(run_dir: Path, command: str, repeat: int) -> None:
    """The run directory's size, Python's bare start-up, then ``command`` ``repeat`` times."""
    from stress.cli.main import main as cli

    if command not in cli.commands:
        print(f"`mnn-stress {command}` does not exist yet (commands: {', '.join(cli.commands)})")
        sys.exit(2)
    parts = sorted((run_dir / "iterations").glob("part-*.parquet"))
    row_count = sum(pq.read_metadata(p).num_rows for p in parts)
    print(
        f"{run_dir}: {row_count:,} iteration rows in {len(parts)} parts, "
        f"{disk_usage(run_dir) / 2**20:,.0f} MiB on disk"
    )
    imports = [sys.executable, "-c", "import stress.analysis.summary, stress.cli.main"]
    print(measure(imports).line("python + imports"))
    argv = [sys.executable, "-m", "stress", *(a.format(run=run_dir) for a in COMMANDS[command])]
    for attempt in range(1, repeat + 1):
        result = measure(argv)
        meets = result.wall_s <= GOAL_S and result.peak_bytes <= GOAL_BYTES
        print(
            result.line(f"{command} #{attempt}")
            + f"  exit {result.exit_code}; {'meets' if meets else 'misses'} the goal "
            f"(<= {GOAL_S:g} s, <= {GOAL_BYTES >> 20} MiB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="action", required=True)
    make = commands.add_parser("generate", help="write a synthetic run directory")
    make.add_argument("out", type=Path)
    make.add_argument("--rows", type=int, default=10_000_000)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--part-rows", type=int, default=PART_ROWS)
    timing = commands.add_parser("time", help="time an analysis command in a fresh process")
    timing.add_argument("run_dir", type=Path)
    timing.add_argument("--command", choices=sorted(COMMANDS), default="summary")
    timing.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.action == "generate":
        begin = time.perf_counter()
        try:
            generate(args.out, args.rows, args.seed, args.part_rows)
        except StressError as exc:  # an OUT_DIR that already holds a run, or cannot be made
            sys.exit(f"error: {exc.render()}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(f"generated in {time.perf_counter() - begin:.1f} s, {peak / 2**20:,.0f} MiB peak RSS")
    else:
        time_command(args.run_dir, args.command, args.repeat)


if __name__ == "__main__":
    main()
