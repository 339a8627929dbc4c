"""From a variant's state to the Job a worker runs: inputs, budget and ring size."""

from __future__ import annotations

import psutil

from stress.contract.protocol import InputPlan, Job, iteration_record_size
from stress.contract.ring import MAX_RECORD_BYTES
from stress.errors import ScenarioError
from stress.factors import misuse
from stress.models import TensorInfo
from stress.scenario import LoadedScenario
from stress.scenario.schema import InputSpec
from stress.scenario.variants import Variant

MIN_RING_BYTES = 16 << 20
ERROR_RECORD_BYTES = 4096  # room beside the outputs for an error's text (4000 bytes at most)
RING_RECORDS = 16  # iterations a ring holds per thread, while that stays within RING_SOFT_BYTES
RING_SOFT_BYTES = 256 << 20  # beyond it a ring holds MIN_RING_RECORDS records, no more
MIN_RING_RECORDS = 2  # a writer takes at most half the ring: one record read, one written
MEMORY_SHARE = 4  # a ring may take at most this fraction (1/4) of the machine's memory


def input_plans(scenario: LoadedScenario) -> list[InputPlan]:
    """One plan per model input. A file input's ``shape`` is the file's, set when the scenario
    was loaded; its path is made absolute, so workers read the file wherever they run."""
    plans = []
    for tensor in scenario.model.inputs:
        given = scenario.spec.inputs.get(tensor.name) or InputSpec()
        shape = list(given.shape) if given.shape else list(tensor.shape)
        source = given.file_path(scenario.path.parent)
        plans.append(
            InputPlan(
                tensor.name,
                shape,
                tensor.dtype,
                given.distribution,
                given.scale,
                str(source) if source else None,
            )
        )
    return plans


def record_bytes(scenario: LoadedScenario) -> int:
    """One iteration's record in the ring: the model's declared outputs, scaled up when the
    scenario gives larger input shapes than the model declares (an upper bound where the
    outputs grow with the inputs)."""
    declared = sum(t.nbytes for t in scenario.model.inputs) or 1
    given = sum(TensorInfo(p.name, tuple(p.shape), p.dtype).nbytes for p in input_plans(scenario))
    scale = max(1.0, given / declared)
    outputs = [(len(t.shape), int(t.nbytes * scale)) for t in scenario.model.outputs]
    return iteration_record_size(outputs)


def ring_capacity(scenario: LoadedScenario, threads: int = 1) -> int:
    """The ring for a worker of ``threads`` threads (``ring_for_records``). A worker whose
    record still does not fit asks for a larger ring (``resize``) and is restarted without
    losing it."""
    return ring_for_records(record_bytes(scenario) + ERROR_RECORD_BYTES, threads)


def ring_for_records(record: int, threads: int = 1) -> int:
    """Room for RING_RECORDS records of ``record`` bytes per thread, but within
    RING_SOFT_BYTES unless MIN_RING_RECORDS records need more: big outputs get a ring of two
    records, not sixteen per thread (which, for a 256 MiB output, was 4 GiB of shared memory
    per worker, all of it drained into the coordinator at the worker's end)."""
    wanted = RING_RECORDS * threads * record
    bounded = max(RING_SOFT_BYTES, MIN_RING_RECORDS * record)
    return max(MIN_RING_BYTES, min(wanted, bounded))


def max_ring_bytes() -> int:
    """The largest ring a worker may have here: a share of the machine's memory, and what a
    record's 32-bit length can say."""
    return min(psutil.virtual_memory().total // MEMORY_SHARE, MIN_RING_RECORDS * MAX_RECORD_BYTES)


def ring_refusal(record: int) -> str | None:
    """Why a record of ``record`` bytes cannot be recorded here, or None when it can."""
    taken = f"one iteration's outputs take {record:,} bytes in the record ring"
    if record > MAX_RECORD_BYTES:
        return f"{taken}, more than a record can hold ({MAX_RECORD_BYTES:,}: a 32-bit length)"
    needed = ring_for_records(record)
    if needed > max_ring_bytes():
        return (
            f"{taken}, which needs a ring of {_mib(needed)}; rings here may take at most "
            f"{_mib(max_ring_bytes())} (a 1/{MEMORY_SHARE} share of this machine's memory)"
        )
    return None


def check_record_fits(scenario: LoadedScenario) -> None:
    """Refuse, before anything runs, a scenario whose outputs cannot be recorded. Only
    outputs of known size are judged here: a dynamic output's size is known when it is
    produced, and a worker that cannot record it ends its variant with the reason."""
    outputs = scenario.model.outputs
    if not all(t.is_static for t in outputs):
        return
    why = ring_refusal(record_bytes(scenario))
    if why is not None:
        shapes = ", ".join(f"{t.name} {list(t.shape)} {t.dtype}" for t in outputs)
        fix = "use a model with smaller outputs"
        if record_bytes(scenario) <= MAX_RECORD_BYTES:  # the ring is what is too large
            fix += ", or run it on a machine with more memory"
        raise ScenarioError(
            f"the model's outputs ({shapes}) cannot be recorded: {why}",
            file=str(scenario.path),
            key="model",
            fix=fix,
        )


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def make_job(
    run_id: str,
    variant: Variant,
    scenario: LoadedScenario,
    worker_id: int,
    *,
    start_iterations: list[int],
    stop_iteration: int | None,
    iterations_per_worker: int | None = None,
    duration_s: float | None,
    fault: str | None,
) -> Job:
    return Job(
        run_id=run_id,
        scenario=scenario.spec.name,
        variant_id=variant.variant_id,
        worker_id=worker_id,
        model_path=scenario.model_for(variant.params).path,
        inputs=input_plans(scenario),
        output_names=misuse.output_names(variant.params, [t.name for t in scenario.model.outputs]),
        params=variant.params,
        seed=scenario.spec.seed,
        start_iterations=list(start_iterations),
        stop_iteration=stop_iteration,
        iterations_per_worker=iterations_per_worker,
        duration_s=duration_s,
        fault=fault,
    )
