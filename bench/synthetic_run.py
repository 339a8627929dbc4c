"""A synthetic run directory of millions of iteration rows, for timing analysis at scale.

Built with the runner's own classes so it stays valid as they change: four scenarios (about 200
variants, real factor values and ids) through ``load_scenario`` and ``plan``, the manifest from
``new_manifest``/``record_states``, each scenario's clean reference
(``coordinator.reference``), rows of exactly ``ITERATION_SCHEMA`` written by ``PartWriter`` in
parts of a real run's size (never splitting an iteration), crashes through
``EventWriter``. The rows look like a night's: 1-4
threads, two 64-element float32 outputs per iteration, lognormal latencies, RSS growing in two
leaking variants, a few variants with other digests (close to the reference or not), NaN,
invalid and error iterations and worker crashes, ``retained``/``after_release`` rows, values
stored for about 1 % of rows. Used by ``bench/analysis_scale.py generate``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stress.contract.protocol import OBSERVATION_NAMES, STATUS_NAMES, Observation, Status  # noqa: E402
from stress.coordinator.plan import Budget, RunSetup, VariantState, plan  # noqa: E402
from stress.coordinator.reference import reference_entries, reference_states  # noqa: E402
from stress.coordinator.run_manifest import new_manifest, record_states  # noqa: E402
from stress.coordinator.runner import load_all, new_run_id  # noqa: E402
from stress.models import TensorInfo  # noqa: E402
from stress.records.events import Event, EventKind, EventWriter  # noqa: E402
from stress.records.journal import Journal  # noqa: E402
from stress.records.manifest import Manifest  # noqa: E402
from stress.records.parts import PartWriter  # noqa: E402
from stress.records.rundir import RunDir, RunLayout  # noqa: E402
from stress.records.schema import CONTEXT_NAMES, ITERATION_SCHEMA  # noqa: E402
from stress.records.states import RunStatus, VariantStatus  # noqa: E402
from stress.records.statistics import block_statistics  # noqa: E402
from stress.scenario import LoadedScenario  # noqa: E402

# Four scenarios, 200 variants; every factor value is validated by load_scenario.
SCENARIOS = {
    "knobs": """
model: tiny
matrix:
  api: [session, module]
  precision: [normal, high, low]
  memory_mode: [normal, high, low]
  num_thread: [1, 2, 4]
""",
    "threads": """
model: tiny
max_crashes: 2
matrix:
  api: [session, module]
  threads: [2, 3, 4]
  sharing: [own, interpreter, session, module, clone]
  caller_lock: [none, setup, all]
  perturb: [none, chaos]
exclude:
  - {api: session, sharing: [module, clone]}
  - {api: module, sharing: [interpreter, session]}
  - {caller_lock: setup, sharing: [own, session, module, clone]}
  - {caller_lock: all, sharing: [own, interpreter, module, clone]}
""",
    "lifetimes": """
model: tiny
max_crashes: 2
matrix:
  api: [session, module]
  threads: [1, 2]
  input_lifetime: [copy, borrowed, mutated, freed, unmapped, gc_churn, strided, fortran]
  output_lifetime: [copy, retained, after_release]
exclude:
  - input_lifetime: [borrowed, mutated, freed, unmapped, gc_churn, strided, fortran]
    output_lifetime: [retained, after_release]
""",
    "inputs": """
model: tiny
matrix:
  api: [session, module]
  input_path: [tensor_copy, nhwc, nc4hw4, host_write, const, numpy_array, placeholder]
  inputs_written: [every_run, once]
  threads: [1, 2, 3, 4]
exclude:
  - {api: session, input_path: [const, numpy_array, placeholder]}
  - {api: module, input_path: [tensor_copy, nhwc, nc4hw4, host_write]}
""",
}

ELEMENTS = 64
OUTPUTS = tuple(TensorInfo(name, (1, ELEMENTS), "float32") for name in ("y", "y_aux"))
# Per output, the digests a variant can produce: as expected, three others, one with NaN.
BASE, ALTERNATES, NAN = 0, (1, 2, 3), 4
ALTERNATE_NOISE = (1e-5, 1e-3, 0.5)  # two within the default tolerance, one a mismatch
KINDS = 5
PART_ROWS = 100_000  # IterationBuffer's max_rows: a real run at full speed writes parts this size
CONCURRENCY = 2
STORED_VALUES = 0.01  # fraction of rows that keep their output bytes
LATER_LOOKS = 8  # iterations per thread whose views output_lifetime reads again
RESTART_NS = 400_000_000  # a replacement worker's start-up after a crash
PAIR_GAP_NS = 300_000_000  # between one pair of variants and the next
HARNESS_NS = 15_000  # the harness's own time per iteration
LATENCY_SIGMA = 0.3  # of log latency within one variant
ERRORS = (
    "Exception: PyMNNInterpreter_getSessionInput: Get input failed",
    "SystemError: <built-in function const> returned a result with an exception set "
    "(cause: TypeError: numpy type does not match)",
)
CRASH_STACK = """Fatal Python error: Segmentation fault

Current thread 0x00007f54c5c6ab80 (most recent call first):
  File "/work/main/stress/worker/drivers/session.py", line 162 in iteration
  File "/work/main/stress/worker/main.py", line 236 in run
  File "/usr/lib/python3.11/threading.py", line 982 in run
"""


@dataclass(frozen=True)
class Behaviour:
    """What one synthetic variant does: most do nothing wrong."""

    latency_ns: float  # median
    anomalies: float  # fraction of iterations with another digest, NaN, invalid or error
    crashes: int  # SIGSEGVs inside the loop, each followed by a fresh worker
    leak_bytes: int  # rss growth per iteration of one worker
    later_look: Observation | None  # rows of kept views read again at the end
    dies_at_end: bool = False  # reading released views kills the worker (Session API)


def behaviours(states: list[VariantState], rng: np.random.Generator) -> list[Behaviour]:
    """Races where the matrix shares a session unlocked, view rows where output_lifetime asks
    for them, two leaks and a few variants with rare failures, chosen at random."""
    found = []
    leaking = set(rng.choice(len(states), size=2, replace=False).tolist())
    for index, state in enumerate(states):
        params = state.variant.params
        racy = params["sharing"] == "session" and params["caller_lock"] == "none"
        lifetime = params["output_lifetime"]
        later = {"retained": Observation.RETAINED, "after_release": Observation.AFTER_RELEASE}
        session_released = lifetime == "after_release" and params["api"] == "session"
        found.append(
            Behaviour(
                latency_ns=50_000 * params["threads"] * rng.lognormal(0.0, 0.8),
                anomalies=0.02 if racy else (0.005 if rng.random() < 0.08 else 0.0),
                crashes=2 if racy else 0,
                leak_bytes=4096 if index in leaking else 0,
                later_look=None if session_released else later.get(lifetime),
                dies_at_end=session_released,
            )
        )
    return found


def catalog(scenario: str) -> tuple[pa.Table, pa.Array]:
    """Per output (KINDS rows each): digest and statistics, and the output bytes, of what a
    variant of ``scenario`` can produce (BASE is the reference's); the same bytes give the same
    digest in every variant."""
    seed = int.from_bytes(hashlib.blake2b(scenario.encode(), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    blocks = []
    for _ in OUTPUTS:
        base = rng.standard_normal(ELEMENTS).astype(np.float32)
        nan = base.copy()
        nan[rng.choice(ELEMENTS, size=5, replace=False)] = np.nan
        alternates = [
            base + rng.normal(0, scale, ELEMENTS).astype(np.float32) for scale in ALTERNATE_NOISE
        ]
        blocks.extend([base, *alternates, nan])
    block = np.stack(blocks)
    nan_count, inf_count, low, high, mean = block_statistics(block)
    table = pa.table(
        {
            "digest": [xxhash.xxh3_64_hexdigest(row.tobytes()) for row in block],
            "nan_count": pa.array(nan_count, pa.int64()),
            "inf_count": pa.array(inf_count, pa.int64()),
            "min": pa.array(low, pa.float64()),
            "max": pa.array(high, pa.float64()),
            "mean": pa.array(mean, pa.float64()),
        }
    )
    return table, pa.array([row.tobytes() for row in block], pa.binary())


@dataclass
class Iterations:
    """One variant's fetched iterations, one entry each (iteration-major, then thread)."""

    thread: np.ndarray
    iteration: np.ndarray
    ts: np.ndarray
    latency: np.ndarray
    rss: np.ndarray
    worker: np.ndarray  # index of the variant's worker that ran it
    status: np.ndarray  # Status
    kind: np.ndarray  # catalog kind of output 0 (output 1 is always BASE)


def simulate(
    state: VariantState, behaviour: Behaviour, start_ns: int, rng: np.random.Generator
) -> Iterations:
    """Each thread runs back to back from ``start_ns``; a crash costs a restart for all."""
    stop, threads = state.stop_iteration, len(state.next_iterations)
    assert stop is not None
    shape = (stop, threads)
    latency = rng.lognormal(np.log(behaviour.latency_ns), LATENCY_SIGMA, shape).astype(np.int64)
    step = latency + HARNESS_NS
    ts = start_ns + np.cumsum(step, axis=0) - step
    iteration = np.repeat(np.arange(stop, dtype=np.int64), threads).reshape(shape)
    crash_points = np.sort(rng.choice(np.arange(1, stop), size=behaviour.crashes, replace=False))
    worker = np.searchsorted(crash_points, iteration, side="right")
    ts += worker * RESTART_NS
    since_start = iteration - np.concatenate([[0], crash_points])[worker]
    base_rss = rng.integers(17 << 20, 40 << 20, behaviour.crashes + 1)[worker]
    rss = base_rss + since_start * behaviour.leak_bytes * threads
    rss += rng.integers(0, 64, rss.shape) * 4096
    anomalous = rng.random(shape) < behaviour.anomalies
    what = rng.integers(0, 4, shape)  # changed digest, NaN, invalid, error
    status = np.where(anomalous & (what == 2), Status.INVALID, Status.OK)
    status = np.where(anomalous & (what == 3), Status.ERROR, status)
    kind = np.where(anomalous & (what == 0), rng.choice(ALTERNATES, shape), BASE)
    kind = np.where(anomalous & (what == 1), NAN, kind)
    flat = lambda a: a.reshape(-1)  # noqa: E731
    return Iterations(
        thread=flat(np.broadcast_to(np.arange(threads, dtype=np.int16), shape)),
        iteration=flat(iteration),
        ts=flat(ts),
        latency=flat(latency),
        rss=flat(rss),
        worker=flat(worker),
        status=flat(status),
        kind=flat(kind),
    )


@dataclass(frozen=True)
class Context:
    """What every row of one variant shares with the run."""

    run_id: str
    mnn_version: str
    state: VariantState
    first_worker_id: int
    pids: np.ndarray  # per worker of the variant
    catalog: tuple[pa.Table, pa.Array]
    stored_values: float = STORED_VALUES  # fraction of rows that keep their output bytes


def fetch_rows(ctx: Context, its: Iterations, rng: np.random.Generator) -> pa.Table:
    """Two rows per ok iteration, one row without output fields per invalid or error one."""
    outputs = np.where(its.status == Status.OK, len(OUTPUTS), 1)
    which = np.repeat(np.arange(len(outputs)), outputs)
    position = np.arange(len(which)) - np.repeat(np.cumsum(outputs) - outputs, outputs)
    has_output = its.status[which] == Status.OK
    kind = np.where(position == 0, its.kind[which], BASE)
    errors = np.array([None, *ERRORS], dtype=object)
    error_index = np.where(its.status == Status.ERROR, 1 + its.iteration % len(ERRORS), 0)
    return rows(
        ctx,
        rng,
        picked=lambda a: a[which],
        its=its,
        output=np.where(has_output, position, -1),
        kind=kind,
        status=np.array(STATUS_NAMES, dtype=object)[its.status[which]],
        rc=np.where(its.status[which] == Status.OK, 0, -1).astype(np.int32),
        error=errors[error_index[which]],
        observation=np.full(len(which), OBSERVATION_NAMES[Observation.FETCH], dtype=object),
    )


def later_rows(
    ctx: Context, its: Iterations, look: Observation, rng: np.random.Generator
) -> pa.Table:
    """Both outputs of each thread's first LATER_LOOKS iterations, read again after the loop:
    Session API views all changed (the tensor's memory was rewritten), Module API about half."""
    first = np.flatnonzero(its.iteration < LATER_LOOKS)
    which = np.repeat(first, len(OUTPUTS))
    changed = np.ones(len(which), bool)
    if ctx.state.variant.params["api"] == "module":
        changed = rng.random(len(which)) < 0.5
    later = dataclasses.replace(
        its, ts=np.full_like(its.ts, its.ts.max() + 1_000_000), latency=np.zeros_like(its.latency)
    )
    return rows(
        ctx,
        rng,
        picked=lambda a: a[which],
        its=later,
        output=np.tile(np.arange(len(OUTPUTS)), len(first)),
        kind=np.where(changed, ALTERNATES[0], BASE),
        status=np.full(len(which), "ok", dtype=object),
        rc=np.zeros(len(which), np.int32),
        error=np.full(len(which), None, dtype=object),
        observation=np.full(len(which), OBSERVATION_NAMES[look], dtype=object),
    )


def rows(
    ctx: Context,
    rng: np.random.Generator,
    picked: Callable[[np.ndarray], np.ndarray],
    its: Iterations,
    output: np.ndarray,
    kind: np.ndarray,
    **per_row: np.ndarray,
) -> pa.Table:
    """The table in ITERATION_SCHEMA: constant context columns, per-iteration columns via
    ``picked``, output fields from the output descriptions and the digest catalog."""
    count = len(output)
    has_output = output >= 0
    stats, stored = ctx.catalog
    entry = pa.array(output * KINDS + kind, pa.int64(), mask=~has_output)
    keep = has_output & (rng.random(count) < ctx.stored_values)
    described = pa.table(
        {
            "output_name": [t.name for t in OUTPUTS],
            "shape": pa.array([list(t.shape) for t in OUTPUTS], pa.list_(pa.int64())),
            "dtype": [t.dtype for t in OUTPUTS],
            "nbytes": pa.array([t.nbytes for t in OUTPUTS], pa.int64()),
        }
    ).take(pa.array(output, pa.int64(), mask=~has_output))
    worker = picked(its.worker)
    columns = {name: described[name] for name in described.column_names}
    picked_stats = stats.take(entry)
    columns.update({name: picked_stats[name] for name in stats.column_names})
    columns["values"] = stored.take(pa.array(output * KINDS + kind, pa.int64(), mask=~keep))
    columns.update(context_columns(ctx, count))
    columns["worker_id"] = pa.array(ctx.first_worker_id + worker, pa.int32())
    columns["pid"] = pa.array(ctx.pids[worker], pa.int32())
    columns["ts"] = pa.array(picked(its.ts)).cast(pa.timestamp("ns", tz="UTC"))
    for name, values in (("thread", its.thread), ("iteration", its.iteration)):
        columns[name] = picked(values)
    columns["latency_ns"], columns["rss_bytes"] = picked(its.latency), picked(its.rss)
    columns.update(per_row)
    return pa.Table.from_arrays(
        [_typed(columns[f.name], f.type) for f in ITERATION_SCHEMA], schema=ITERATION_SCHEMA
    )


def _typed(values: Any, type_: pa.DataType) -> pa.Array:
    """One column as an array of the schema's type (a missing or mistyped column raises)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == type_ else values.cast(type_)
    return pa.array(values, type_)


def context_columns(ctx: Context, count: int) -> dict[str, pa.Array]:
    """The columns every row of a worker repeats (worker_id and pid are set per row)."""
    variant = ctx.state.variant
    values = {
        "run_id": ctx.run_id,
        "scenario": variant.scenario,
        "variant_id": variant.variant_id,
        **variant.params,
        "mnn_version": ctx.mnn_version,
    }
    types = {f.name: f.type for f in ITERATION_SCHEMA}
    return {
        name: pa.repeat(pa.scalar(values[name], types[name]), count)
        for name in CONTEXT_NAMES
        if name not in ("worker_id", "pid")
    }


def crash_events(ctx: Context, its: Iterations, behaviour: Behaviour) -> list[Event]:
    """A SIGSEGV event for each worker that died in the loop (its in-flight iteration is its
    replacement's first), and one after the loop for a worker that reads released views."""
    events = []
    for worker in range(1, behaviour.crashes + 1):
        first = np.flatnonzero(its.worker == worker)[0]
        events.append(crash(ctx, worker - 1, int(its.iteration[first]), int(its.ts[first])))
    if behaviour.dies_at_end:
        last = len(its.ts) - 1
        events.append(crash(ctx, int(its.worker[last]), None, int(its.ts[last]) + 1_000_000))
    return events


def crash(ctx: Context, worker: int, iteration: int | None, ts: int) -> Event:
    variant = ctx.state.variant
    return Event(
        run_id=ctx.run_id,
        scenario=variant.scenario,
        variant_id=variant.variant_id,
        worker_id=ctx.first_worker_id + worker,
        pid=int(ctx.pids[worker]),
        kind=EventKind.CRASH,
        message="worker died of SIGSEGV",
        iteration=iteration,
        signal="SIGSEGV",
        exit_code=-11,
        stack=CRASH_STACK,
        stderr_tail=CRASH_STACK,
        mnn_version=ctx.mnn_version,
        in_flight=[iteration] * len(ctx.state.next_iterations),
        params=variant.params,
        ts=ts - RESTART_NS // 2,
    )


class Parts:
    """Rows in time order, cut into parts of at least ``part_rows`` as a running coordinator
    would: IterationBuffer adds a record's rows together and flushes whole buffers, so one
    iteration's rows (one per output) are never split across two parts."""

    def __init__(self, writer: PartWriter, part_rows: int) -> None:
        self.writer, self.part_rows = writer, part_rows
        self.pending: list[pa.Table] = []
        self.rows = 0

    def add(self, table: pa.Table) -> None:
        self.pending.append(table)
        self.rows += table.num_rows
        while self.rows > self.part_rows:
            joined = pa.concat_tables(self.pending)
            cut = _record_end(joined, self.part_rows)
            self.writer.write(joined.slice(0, cut))
            self.pending = [joined.slice(cut)]
            self.rows = self.pending[0].num_rows

    def close(self) -> None:
        if self.rows:
            self.writer.write(pa.concat_tables(self.pending))


_RECORD_KEYS = ("variant_id", "thread", "iteration", "observation")


def _record_end(table: pa.Table, start: int) -> int:
    """The first row at or after ``start`` that begins another record (a record's rows are
    adjacent: the rows are in time order and a record's rows share its time)."""
    ahead = table.slice(start - 1, len(OUTPUTS) + 1).select(_RECORD_KEYS).to_pylist()
    for offset in range(1, len(ahead)):
        if ahead[offset] != ahead[0]:
            return start - 1 + offset
    return start - 1 + len(ahead)


def load_scenarios(directory: Path) -> list[LoadedScenario]:
    """The scenarios through the real loader, each model described with OUTPUTS."""
    for name, text in SCENARIOS.items():
        (directory / f"{name}.yaml").write_text(f"name: {name}\niterations: 100\n{text}")
    loaded = load_all(sorted(directory.glob("*.yaml")))
    return [
        dataclasses.replace(s, model=dataclasses.replace(s.model, outputs=OUTPUTS)) for s in loaded
    ]


def generate(out: Path, rows: int, seed: int, part_rows: int) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        scenarios = load_scenarios(Path(tmp))
        threads = sum(s.variant.params["threads"] for s in plan(scenarios, Budget(1), CONCURRENCY))
        per_thread = max(LATER_LOOKS, rows // (len(OUTPUTS) * threads))
        budget = Budget(iterations=per_thread)
        states = plan(scenarios, budget, CONCURRENCY)
        setup = RunSetup(new_run_id(), scenarios, states, CONCURRENCY, budget, None)
        run_dir = RunDir.create(out)
    try:
        manifest = Manifest(out, new_manifest(setup))
        found = behaviours(states, rng)
        clock = time.time_ns() - int(expected_span(states, found))  # the run ends about now
        manifest.data.started = _iso(clock)
        mnn_version = manifest.data.versions["MNN"] or "3.6.1"
        clock = write_reference(out, setup, mnn_version, clock, rng, manifest)
        written, clock = write_variants(out, setup, found, part_rows, mnn_version, clock, rng)
        finish_run(out, manifest, states, clock)
    finally:
        run_dir.close()
    print(f"{written:,} rows, {len(states)} variants, {per_thread:,} iterations per thread")


def write_reference(
    out: Path,
    setup: RunSetup,
    mnn_version: str,
    clock: int,
    rng: np.random.Generator,
    manifest: Manifest,
) -> int:
    """Each scenario's clean reference (``coordinator.reference``), one worker at a time before the
    variants, every output's values kept; returns the clock after it."""
    states = reference_states(setup.scenarios)
    parts = PartWriter(RunLayout(out).reference.iterations)
    clean = Behaviour(50_000, anomalies=0.0, crashes=0, leak_bytes=0, later_look=None)
    for worker_id, state in enumerate(states):
        pids = rng.integers(2_000, 4_000_000, 1)
        scenario = state.variant.scenario
        ctx = Context(setup.run_id, mnn_version, state, worker_id, pids, catalog(scenario), 1.0)
        its = simulate(state, clean, clock, rng)
        parts.write(fetch_rows(ctx, its, rng))
        finish(state, its, clean)
        clock = int(its.ts.max()) + PAIR_GAP_NS
    manifest.data.reference = reference_entries(states)
    return clock


def write_variants(
    out: Path,
    setup: RunSetup,
    found: list[Behaviour],
    part_rows: int,
    mnn_version: str,
    clock: int,
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Two variants at a time (the run's two workers), their rows merged in time order;
    returns the rows written and the clock after the last variant."""
    parts, events = Parts(PartWriter(out / "iterations"), part_rows), EventWriter(out / "events")
    next_worker, written = 0, 0
    for first in range(0, len(setup.states), CONCURRENCY):
        tables, ends = [], []
        for state, behaviour in list(zip(setup.states, found))[first : first + CONCURRENCY]:
            pids = rng.integers(2_000, 4_000_000, behaviour.crashes + 1)
            scenario = state.variant.scenario
            ctx = Context(setup.run_id, mnn_version, state, next_worker, pids, catalog(scenario))
            its = simulate(state, behaviour, clock, rng)
            tables.append(fetch_rows(ctx, its, rng))
            if behaviour.later_look is not None:
                tables.append(later_rows(ctx, its, behaviour.later_look, rng))
            for event in crash_events(ctx, its, behaviour):
                events.write(event)
            finish(state, its, behaviour)
            next_worker += behaviour.crashes + 1
            ends.append(int(its.ts.max()) + int(its.latency.max()))
        merged = pa.concat_tables(tables).sort_by("ts")
        parts.add(merged)
        written += merged.num_rows
        clock = max(ends) + PAIR_GAP_NS
    parts.close()
    return written, clock


def finish_run(out: Path, manifest: Manifest, states: list[VariantState], clock: int) -> None:
    """The final manifest and the journal's last line, as a complete run leaves them."""
    manifest.data.status, manifest.data.ended = RunStatus.COMPLETE, _iso(clock)
    record_states(manifest, states)
    manifest.save()
    journal = Journal(out)
    journal.run(RunStatus.COMPLETE.value, None)
    journal.close()


def expected_span(states: list[VariantState], found: list[Behaviour]) -> float:
    """The run's expected length in ns: per pair of variants, the slower one's."""
    slowest = [
        max(map(expected_ns, found[i : i + CONCURRENCY])) for i in range(0, len(found), CONCURRENCY)
    ]
    return states[0].stop_iteration * sum(slowest) + PAIR_GAP_NS * len(slowest)


def expected_ns(behaviour: Behaviour) -> float:
    """A variant's expected time per iteration of one thread, crashes spread over all."""
    return behaviour.latency_ns * np.exp(LATENCY_SIGMA**2 / 2) + HARNESS_NS


def finish(state: VariantState, its: Iterations, behaviour: Behaviour) -> None:
    """The variant's final state, as the coordinator would have left it."""
    state.completed = len(its.iteration)
    state.next_iterations = [state.stop_iteration] * len(state.next_iterations)
    state.crashes = behaviour.crashes + behaviour.dies_at_end
    state.workers_started = behaviour.crashes + 1
    state.status = VariantStatus.DONE


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat(timespec="milliseconds")
