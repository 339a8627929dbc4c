"""From a variant's state to the Job a worker runs: inputs, budget and ring size."""

from __future__ import annotations

from stress.contract.protocol import InputPlan, Job
from stress.factors import misuse
from stress.models import TensorInfo
from stress.scenario import LoadedScenario
from stress.scenario.schema import InputSpec
from stress.variants import Variant

MIN_RING_BYTES = 16 << 20
RING_RECORDS = 16


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


def ring_capacity(scenario: LoadedScenario, threads: int = 1) -> int:
    """Room for RING_RECORDS iterations of the model's outputs per thread, scaled up when the
    scenario gives larger input shapes than the model declares. A worker whose record still
    does not fit asks for a larger ring (``resize``) and is restarted without losing it."""
    declared = sum(t.nbytes for t in scenario.model.inputs) or 1
    given = sum(TensorInfo(p.name, tuple(p.shape), p.dtype).nbytes for p in input_plans(scenario))
    scale = max(1.0, given / declared)
    record = int(sum(t.nbytes + 64 for t in scenario.model.outputs) * scale) + 4096
    return max(MIN_RING_BYTES, RING_RECORDS * threads * record)


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
