"""The scenario schema: pydantic models with strict types and bounded values.

The ``matrix`` model is generated from the factor registry, so a new factor appears in
validation, ``mnn-stress schema`` and the variants without edits here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from stress.contract import dtypes
from stress.factors import REGISTRY
from stress.factors.factor import Factor
from stress.scenario.durations import Duration, Timeout

# Beyond these limits a value is a typo or a hostile file, never a plan; errors print them.
MAX_SEED = 2**63 - 1  # the largest int64: any tool reading the manifest can hold it
MAX_ITERATIONS = 2**62 - 1  # iteration numbers are int64 in the rows, with headroom for sums
MAX_WORKERS = 1024  # processes at once; far beyond any host this runs on
MAX_CRASHES = 1_000_000  # restarts of one variant; more is an endless loop, not a budget
MAX_VALUE_BYTES = 1 << 30  # one output's values kept in one row
MAX_DIM = 2**31 - 1  # MNN's dimensions are int32
MAX_INPUT_BYTES = 2 << 30  # one generated input array, made in every worker
# A scenario name is part of file names (logs and cores ``reference-NAME-wID``, cgroups
# ``mnn-stress-PID-reference-NAME-wID``, ``NAME.npz``): at most 128 of the portable characters
# below keeps the longest such name near 170 bytes, under the 255 file systems allow.
MAX_NAME = 128

_Strict = ConfigDict(extra="forbid", strict=True)
INPUT_DTYPES = dtypes.FEEDABLE  # what both APIs take correctly (MNN 3.6.1)


# Their range is the dtype's, so ``scale`` would only move them out of it: load refuses it.
UNSCALED_DISTRIBUTIONS = ("large", "denormal")


class InputSpec(BaseModel):
    """How one model input is filled: generated (the same seed gives the same bytes on every
    run) or read from a ``file``. Rules across keys (file excludes distribution and scale,
    large and denormal take no scale) are checked at load, where errors name the key."""

    model_config = _Strict
    distribution: Literal["normal", "uniform", "zeros", "ones", "large", "denormal"] = Field(
        "normal",
        description="large: magnitudes near the dtype's limit (floats: normal x max/8, so "
        "sums and products overflow; ints: a quarter to half of the range); denormal: "
        "subnormal floats, zeros for ints",
    )
    scale: float = Field(
        1.0,
        allow_inf_nan=False,
        description="multiplies the generated values (not with large or denormal)",
    )
    shape: list[Annotated[int, Field(gt=0, le=MAX_DIM)]] | None = Field(
        None, description="needed only where the model's input shape is dynamic"
    )
    file: str | None = Field(
        None,
        min_length=1,
        description="the values from a .npy file, or a .npz file's array named after the "
        "input; relative to the scenario's folder; same dtype and shape as the model's input",
    )

    def file_path(self, scenario_dir: Path) -> Path | None:
        """Where ``file`` is: a relative path is taken from the scenario file's folder."""
        return None if self.file is None else (scenario_dir / self.file).absolute()


class RecordSpec(BaseModel):
    """What each iteration row keeps besides digest and statistics."""

    model_config = _Strict
    max_value_bytes: int = Field(
        65536,
        ge=0,
        le=MAX_VALUE_BYTES,
        description="store an output's values when it is at most this many bytes",
    )


class PlacementSpec(BaseModel):
    """Which nodes of a cluster run (``run --ray``) may run this scenario's variants."""

    model_config = _Strict
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray resources a node must have (at least this much of each), e.g. "
        "{arm64: 1} for nodes started with `ray start --resources '{\"arm64\": 1}'`",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Ray node labels a node must carry, e.g. {zone: lab-2} for `ray start "
        "--labels zone=lab-2`",
    )


class OutputTolerance(BaseModel):
    """How far one output may be from the clean reference and still be graded ``close``."""

    model_config = _Strict
    statistic: Literal["mnn", "elementwise", "max", "mean", "quantile"] | None = Field(
        None,
        description="mnn (default): max|diff| <= atol + rtol x max(max|expected|, 1e-4), as "
        "MNN's own tools check; elementwise: every |diff| <= atol + rtol x |expected|; max, "
        "mean, quantile: that statistic of |diff| <= atol, or of |diff|/|expected| <= rtol",
    )
    atol: float | None = Field(None, ge=0, allow_inf_nan=False, description="default 0")
    rtol: float | None = Field(None, ge=0, allow_inf_nan=False, description="default 0.01")
    quantile: float | None = Field(
        None, gt=0, le=1, description="for statistic: quantile (default 0.99)"
    )


class ToleranceSpec(OutputTolerance):
    """The scenario's tolerance, and per output ones over it (``outputs: {prob: {atol: 1e-4}}``).
    The same variant is still held to bit equality run to run (``distinct``)."""

    outputs: dict[str, OutputTolerance] = Field(
        default_factory=dict, max_length=1000, description="per output name"
    )


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _values(factor: Factor) -> Any:
    """A matrix key's type: a list of values, or one value (a list of one). ``off`` is a value
    of a factor that may be off."""
    item = factor.kind | Literal["off"] if factor.off else factor.kind
    if factor.parse is not None:
        item = Annotated[item, BeforeValidator(factor.parse)]
    return Annotated[list[item], BeforeValidator(_as_list)]


def _factor_field(factor: Factor) -> tuple[Any, Any]:
    """A matrix key. A factor with a default per API is left unset (None) when not given: each
    combination gets its API's default."""
    annotation = _values(factor)
    if factor.per_api is not None:
        defaults = ", ".join(f"{v} for api={api}" for api, v in factor.per_api.items())
        return annotation | None, Field(
            None,
            description=f"{factor.doc} Default: {defaults}.",
            json_schema_extra=_factor_schema(factor),
        )
    return annotation, Field(
        [factor.default], description=factor.doc, json_schema_extra=_factor_schema(factor)
    )


def _factor_schema(factor: Factor) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if factor.choices:
        item["enum"] = list(factor.choices)
    if factor.minimum is not None:
        item["minimum"] = factor.minimum
    if factor.maximum is not None:
        item["maximum"] = factor.maximum
    return {"items": item} if item else {}


def _optional(check: Any) -> Any:
    def optional(cls, values: list[Any] | None) -> list[Any] | None:
        return None if values is None else check.__func__(cls, values)

    return classmethod(optional)


def _matrix_model() -> type[BaseModel]:
    fields = {name: _factor_field(factor) for name, factor in REGISTRY.items()}
    validators = {
        f"check_{name}": field_validator(name)(
            _optional(_checker(factor)) if factor.per_api else _checker(factor)
        )
        for name, factor in REGISTRY.items()
    }
    return create_model(
        "Matrix",
        __config__=ConfigDict(extra="forbid", strict=True),
        __validators__=validators,
        **fields,
    )


def _checker(factor: Factor):
    def check(cls, values: list[Any]) -> list[Any]:
        if not values:
            raise ValueError("give at least one value")
        if factor.off:
            values = [None if value == "off" else value for value in values]
        for value in values:
            problem = factor.check(value)
            if problem:
                raise ValueError(problem)
        if len(set(values)) != len(values):
            raise ValueError("a value is listed twice")
        return values

    return classmethod(check)


Matrix = _matrix_model()


def _exclusion_model() -> type[BaseModel]:
    """One ``exclude:`` entry: some factors' values; variants that have all of them are left
    out of the matrix (GitHub Actions' ``exclude``)."""
    fields = {name: (_values(factor) | None, None) for name, factor in REGISTRY.items()}
    validators = {
        f"check_{name}": field_validator(name)(_optional(_checker(factor)))
        for name, factor in REGISTRY.items()
    }
    return create_model(
        "Exclusion",
        __config__=ConfigDict(extra="forbid", strict=True),
        __validators__=validators,
        **fields,
    )


Exclusion = _exclusion_model()


class Scenario(BaseModel):
    """One scenario file: a model, how to feed it, and the matrix of factors to cross."""

    model_config = _Strict
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=MAX_NAME,
        description="unique within a run; part of every variant id and of file names: "
        f"letters, digits, _ . - (at most {MAX_NAME})",
    )
    description: str = ""
    model: str = Field(description="built-in model name, or a path to a .mnn or .onnx file")
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    seed: int = Field(0, ge=0, le=MAX_SEED, description="input generator seed")
    iterations: int | None = Field(
        None, ge=1, le=MAX_ITERATIONS, description="iterations per variant"
    )
    duration: Duration | None = Field(
        None, description="iteration time per variant, with its unit: 500ms, 30s, 2m, 8h"
    )
    workers: int | None = Field(
        None, ge=1, le=MAX_WORKERS, description="most worker processes this scenario uses at once"
    )
    timeout: Timeout = Field(
        30.0,
        description="longest one iteration may take before the worker is killed as hung, with "
        "its unit (e.g. 30s)",
    )
    fresh_worker_every: int | None = Field(
        None,
        ge=1,
        le=MAX_ITERATIONS,
        description="start a fresh worker process after this many iterations per thread, so "
        "repeats happen across fresh processes and not only within one",
    )
    adaptive: bool = Field(
        True,
        description="with a time budget: a first fair pass on part of each variant's share, "
        "then the rest to the variants whose failure rate is still uncertain",
    )
    max_crashes: int = Field(
        3,
        ge=0,
        le=MAX_CRASHES,
        description="worker deaths a variant may cause before it is quarantined",
    )
    max_rss_mib: int = Field(
        4096,
        ge=64,
        le=1 << 20,
        description="a worker whose resident memory grows past this many MiB is killed "
        "(event 'memory', counted as a death): a leak found, not a machine brought down",
    )
    max_log_mib: int = Field(
        16,
        ge=1,
        le=1 << 12,
        description="each worker's log (MNN's output, stacks) is cut to this many MiB while it "
        "runs, keeping its head and its tail",
    )
    python: str | None = Field(
        None,
        max_length=4096,
        description="the interpreter the workers run under (default: mnn-stress's own); it "
        "needs numpy and MNN, nothing else",
    )
    record: RecordSpec = Field(default_factory=RecordSpec)
    placement: PlacementSpec | None = Field(
        None, description="the nodes of a cluster run (run --ray) this scenario may run on"
    )
    tolerance: ToleranceSpec = Field(
        default_factory=ToleranceSpec,
        description="how far outputs may be from the clean reference and still be close",
    )
    matrix: Matrix = Field(default_factory=Matrix)  # type: ignore[valid-type]
    exclude: list[Exclusion] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=100,
        description="combinations left out of the matrix, e.g. [{api: module, sharing: session}]",
    )
    strategy: Literal["full", "pairwise", "3-way"] = Field(
        "full",
        description="which combinations of the matrix run: full (every one), pairwise (every "
        "two values of two factors together at least once) or 3-way (every three); a covering "
        "strategy needs far fewer variants, and a variant in both has the same id",
    )
    constraints: list[Exclusion] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=100,
        description="combinations that must not run, in exclude's format; the same as exclude "
        "to the full product; for pairwise and 3-way both are constraints of the generation, "
        "as are the factors' own rules (a combination they refuse is left out, not an error)",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> Scenario:
        if self.iterations is not None and self.duration is not None:
            raise ValueError("give either iterations or duration, not both")
        if self.iterations is None and self.duration is None:
            # the default budget, left out of model_fields_set: that says what the file gave
            self.__dict__["iterations"] = 100
        return self


def json_schema() -> dict[str, Any]:
    """JSON Schema of a scenario file, for editors (``mnn-stress schema``)."""
    schema = Scenario.model_json_schema(mode="validation")
    schema["title"] = "mnn-stress scenario"
    return schema
