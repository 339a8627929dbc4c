"""Harness overhead, its cost with threads and chaos, and crash turnaround, in one run.

1. For each model and API: iterations/s of one mnn-stress worker (steady state, from the rows'
   timestamps) versus a bare Python loop making the same MNN calls (bench/bare_loop.py),
   alternated REPEATS times; prints the median rates, the median and range of the per-pair
   ratios, and the added time per iteration.
2. The same with ``threads: 4`` (``--threads``): one worker running 4 Python threads, each with
   its own loop and iteration budget, against bare_loop.py running the same calls in 4 threads
   with the same ``sharing`` (``own`` by default: an Interpreter and session per thread, or a
   runtime manager and module per thread; ``--sharing`` adds the others). Throughput is the
   total iterations/s over all threads while every thread was running (bench/steady.py), for
   the harness from the rows' timestamps as in 1.
3. The cost of ``perturb: chaos`` (a 1 us switch interval, seeded random yields and sleeps
   before each stage): the harness with perturb none (the runs of 1 and 2) against chaos, run
   in the same alternation, with 1 thread and with 4 threads (sharing own).
4. The time from a worker's death (injected SIGSEGV) to its replacement's first iteration.

"added/it" is the time each thread's iteration gained: threads x (1/rate - 1/baseline rate)
(for one thread, the added time per iteration). Iteration budgets are per thread. "others" is
how many cores processes other than the bench's own kept busy during the case's runs (median /
max over its runs, from /proc/stat less the bench's own CPU time): on a shared machine, a row
with others well above 0 is noise, not a figure.

Usage: .venv/bin/python bench/overhead.py [--repeats 5] [--quick] [--threads 4]
                                          [--sharing own[,interpreter,session,module,clone]]
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

import pyarrow.dataset as ds

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from steady import window_rate  # noqa: E402

from stress.models.resolve import resolve_model  # noqa: E402

CASES = [
    ("tiny", "session", 30000),
    ("tiny", "module", 30000),
    ("three_input", "session", 300),
    ("three_input", "module", 300),
]
# Per-thread budgets with several threads: the steady window needs a second or two, not more.
THREADED = {"tiny": 10000, "three_input": 100}
# Per-thread budgets under chaos (an iteration waits ~0.5 ms on its sleeps): ~1-3 s each.
CHAOS = {("tiny", 1): 2000, ("tiny", 4): 2000, ("three_input", 1): 150, ("three_input", 4): 60}
SHARING = {"session": ("own", "interpreter", "session"), "module": ("own", "module", "clone")}
DEFAULTS = {"threads": 1, "sharing": "own", "perturb": "none"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OTHERS: list[float] = []  # per measured subprocess: cores busy with other processes' work


def _busy_s() -> float:
    """CPU time the whole machine spent busy (including time stolen by the hypervisor)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _ours_s() -> float:
    """CPU time of this process and its reaped descendants (the runs and their workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def run_measured(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    """subprocess.run, noting in OTHERS how many cores other processes kept busy meanwhile: on
    a shared machine that is the noise behind a figure."""
    busy, ours, start = _busy_s(), _ours_s(), time.monotonic()
    done = subprocess.run(command, **kwargs)
    wall = time.monotonic() - start
    OTHERS.append(max(0.0, (_busy_s() - busy) - (_ours_s() - ours)) / wall)
    return done


def bare(api: str, path: str, n: int, threads: int = 1, sharing: str = "own") -> float:
    args = [api, path, str(n)] + (
        [str(threads), sharing] if (threads, sharing) != (1, "own") else []
    )
    done = run_measured(
        [sys.executable, str(REPO / "bench" / "bare_loop.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def harness(
    model: str, api: str, n: int, tmp: Path, fault: str | None = None, **factors: object
) -> Path:
    """Run one variant in one worker; ``factors`` (threads, sharing, perturb) go into its
    matrix when they differ from their defaults, so the plain case's scenario is unchanged."""
    extra = {k: v for k, v in factors.items() if DEFAULTS.get(k) != v}
    label = "-".join([model, api, *(f"{k}={v}" for k, v in sorted(extra.items()))])
    scenario = tmp / f"{label}.yaml"
    scenario.write_text(
        f"name: bench\nmodel: {model}\niterations: {n}\nmax_crashes: 5\n"
        f"matrix:\n  api: [{api}]\n  num_thread: [1]\n"
        + "".join(f"  {k}: [{v}]\n" for k, v in extra.items())
    )
    out = Path(tempfile.mkdtemp(dir=tmp))
    os.rmdir(out)
    env = dict(os.environ, **({"MNN_STRESS_TEST_FAULT": fault} if fault else {}))
    run_measured(
        [sys.executable, "-m", "stress", "run", str(scenario), "--out", str(out), "--workers", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
    )
    return out


def steady_rate(run_dir: Path, threads: int = 1) -> float:
    """Total iterations/s of the run's one worker while all its threads ran. Refuses a run
    whose rows are not all ok from one worker with every thread present: not a clean figure."""
    table = ds.dataset(str(run_dir / "iterations")).to_table(
        columns=["ts", "thread", "status", "worker_id"]
    )
    status = set(table["status"].to_pylist())
    workers = set(table["worker_id"].to_pylist())
    thread = table["thread"].to_numpy()
    if status != {"ok"} or len(workers) != 1 or len(set(thread.tolist())) != threads:
        raise RuntimeError(
            f"{run_dir}: statuses {status}, workers {workers}, threads {set(thread.tolist())}"
        )
    ts = table["ts"].to_numpy().astype("int64")
    return window_rate([ts[thread == t] for t in range(threads)])


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


def summary(pairs: list[tuple[float, float]], threads: int, others: list[float]) -> str:
    """Median baseline and measured rates, median and range of the ratios, added time, and
    the cores other processes kept busy during the case's runs (median/max)."""
    ratios = sorted(m / b for b, m in pairs)
    b = statistics.median(p[0] for p in pairs)
    m = statistics.median(p[1] for p in pairs)
    return (
        f"{b:>10.0f} {m:>13.0f} {statistics.median(ratios):>6.3f} "
        f"{ratios[0]:>6.3f}-{ratios[-1]:<6.3f} {threads * (1 / m - 1 / b) * 1e6:>9.2f} us "
        f"{statistics.median(others):>4.2f}/{max(others):<4.2f}"
    )


def measure(
    model: str,
    api: str,
    n: int,
    threads: int,
    sharing: str,
    repeats: int,
    tmp: Path,
    chaos: bool,
) -> tuple[list[tuple[float, float]], list[tuple[float, float]], list[float]]:
    """REPEATS rounds of bare, harness, and (with ``chaos``) harness under chaos, alternated:
    (bare, harness) pairs, (harness, harness under chaos) pairs, and the other processes' load
    during every run (OTHERS)."""
    path = resolve_model(model, REPO).path
    first = len(OTHERS)
    overhead, perturbed = [], []
    for _ in range(repeats):
        b = bare(api, path, n, threads, sharing)
        run = harness(model, api, n, tmp, threads=threads, sharing=sharing)
        h = steady_rate(run, threads)
        overhead.append((b, h))
        if chaos:
            n_chaos = CHAOS[(model, threads)]
            run = harness(
                model, api, n_chaos, tmp, threads=threads, sharing=sharing, perturb="chaos"
            )
            perturbed.append((h, steady_rate(run, threads)))
    return overhead, perturbed, OTHERS[first:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=None, help="rounds per case (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 rounds per case")
    parser.add_argument("--threads", type=int, default=4, help="threads of part 2 (default 4)")
    parser.add_argument(
        "--sharing",
        default="own",
        help="comma-separated sharing modes of part 2 (default own); each runs on the APIs "
        "that have it: session own|interpreter|session, module own|module|clone",
    )
    args = parser.parse_args()
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    sharings = [s for s in args.sharing.split(",") if s]
    unknown = set(sharings) - {s for modes in SHARING.values() for s in modes}
    if unknown or args.threads < 2:
        parser.error(f"--threads must be >= 2 and --sharing from {SHARING} (got {unknown})")
    began = time.monotonic()
    print(
        f"# machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; "
        f"repeats {repeats}, alternating bare / harness / harness under chaos; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    chaos_rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print(
            f"{'model':<12} {'api':<8} {'bare it/s':>10} {'harness it/s':>13} "
            f"{'ratio':>6} {'range':>13} {'overhead/it':>12} {'others':>9}"
        )
        for model, api, n in CASES:
            pairs, perturbed, others = measure(model, api, n, 1, "own", repeats, tmp, chaos=True)
            print(f"{model:<12} {api:<8} {summary(pairs, 1, others)}")
            chaos_rows.append((model, api, 1, perturbed, others))

        threads = args.threads
        print(
            f"\n# threads {threads}: total it/s over all threads while all ran; "
            f"iterations per thread {THREADED}"
        )
        print(
            f"{'model':<12} {'api':<8} {'sharing':<12} {'bare it/s':>10} {'harness it/s':>13} "
            f"{'ratio':>6} {'range':>13} {'added/it':>12} {'others':>9}"
        )
        for model, n in THREADED.items():
            for api in ("session", "module"):
                for sharing in (s for s in sharings if s in SHARING[api]):
                    chaos = sharing == "own"
                    pairs, perturbed, others = measure(
                        model, api, n, threads, sharing, repeats, tmp, chaos
                    )
                    print(f"{model:<12} {api:<8} {sharing:<12} {summary(pairs, threads, others)}")
                    if chaos:
                        chaos_rows.append((model, api, threads, perturbed, others))

        print(
            f"\n# perturb chaos vs none (harness, sharing own); chaos iterations per thread "
            f"{ {f'{m}/{t}': v for (m, t), v in CHAOS.items()} }"
        )
        print(
            f"{'model':<12} {'api':<8} {'threads':>7} {'none it/s':>10} {'chaos it/s':>13} "
            f"{'ratio':>6} {'range':>13} {'added/it':>12} {'others':>9}"
        )
        for model, api, n_threads, perturbed, others in sorted(chaos_rows, key=lambda r: r[:3]):
            print(f"{model:<12} {api:<8} {n_threads:>7} {summary(perturbed, n_threads, others)}")

        samples = turnaround(tmp, repeats)
        detected = statistics.median(s[0] for s in samples)
        gap = statistics.median(s[1] for s in samples)
        print(
            f"\ncrash turnaround (median of {repeats}): death detected -> replacement's first "
            f"iteration {detected * 1000:.0f} ms; last iteration before the death -> first "
            f"after {gap * 1000:.0f} ms"
        )
    print(
        f"# took {time.monotonic() - began:.0f} s; load average now {os.getloadavg()[0]:.2f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
