"""Scenario files: the YAML schema, loading with line numbers, and validation against the model.

The schema is pydantic models; the ``matrix`` model is generated from the factor registry, so
a new factor appears in validation, ``mnn-stress schema`` and the variants without edits here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from ruamel.yaml.comments import CommentedMap

from stress.errors import ModelError, ScenarioError
from stress.factors import REGISTRY, Factor
from stress.models import ModelInfo
from stress.yaml_source import key_path, line_of, plain, read_yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as ``500ms``, ``90s``, ``2m``, ``8h``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 2m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 500ms, 30s, 2m or 1h")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
_Strict = ConfigDict(extra="forbid", strict=True)
INPUT_DTYPES = ("float32", "int32", "uint8")  # what both APIs take correctly (MNN 3.6.1)


class InputSpec(BaseModel):
    """How one model input is filled; the same seed gives the same bytes on every run."""

    model_config = _Strict
    distribution: Literal["normal", "uniform", "zeros", "ones"] = "normal"
    scale: float = Field(1.0, description="multiplies the generated values")
    shape: list[Annotated[int, Field(gt=0)]] | None = Field(
        None, description="needed only where the model's input shape is dynamic"
    )


class RecordSpec(BaseModel):
    """What each iteration row keeps besides digest and statistics."""

    model_config = _Strict
    max_value_bytes: int = Field(
        65536, ge=0, description="store an output's values when it is at most this many bytes"
    )


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _factor_field(factor: Factor) -> tuple[Any, Any]:
    annotation = Annotated[list[factor.kind], BeforeValidator(_as_list)]
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


def _matrix_model() -> type[BaseModel]:
    fields = {name: _factor_field(factor) for name, factor in REGISTRY.items()}
    validators = {
        f"check_{name}": field_validator(name)(_checker(factor))
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
        for value in values:
            problem = factor.check(value)
            if problem:
                raise ValueError(problem)
        if len(set(values)) != len(values):
            raise ValueError("a value is listed twice")
        return values

    return classmethod(check)


Matrix = _matrix_model()


class Scenario(BaseModel):
    """One scenario file: a model, how to feed it, and the matrix of factors to cross."""

    model_config = _Strict
    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="unique within a run; part of every variant id",
    )
    description: str = ""
    model: str = Field(description="built-in model name, or a path to a .mnn or .onnx file")
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    seed: int = Field(0, ge=0, description="input generator seed")
    iterations: int | None = Field(None, gt=0, description="iterations per variant")
    duration: Duration | None = Field(None, description="time per variant, e.g. 30s")
    workers: int | None = Field(
        None, gt=0, description="most worker processes this scenario uses at once"
    )
    timeout: Duration = Field(
        30.0, description="longest one iteration may take before the worker is killed as hung"
    )
    max_crashes: int = Field(
        3, ge=0, description="worker deaths a variant may cause before it is quarantined"
    )
    record: RecordSpec = Field(default_factory=RecordSpec)
    matrix: Matrix = Field(default_factory=Matrix)  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_budget(self) -> Scenario:
        if self.iterations is not None and self.duration is not None:
            raise ValueError("give either iterations or duration, not both")
        if self.iterations is None and self.duration is None:
            self.iterations = 100
        return self


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with its source text and resolved model."""

    path: Path
    text: str
    spec: Scenario
    model: ModelInfo


def json_schema() -> dict[str, Any]:
    """JSON Schema of a scenario file, for editors (``mnn-stress schema``)."""
    schema = Scenario.model_json_schema(mode="validation")
    schema["title"] = "mnn-stress scenario"
    return schema


def load_scenario(path: str | Path) -> LoadedScenario:
    """Parse, validate and check a scenario against its model; raise ScenarioError on any fault."""
    from stress.models.resolve import resolve_model

    path = Path(path)
    text, data = read_yaml(path)
    spec = _validate(path, data)
    try:
        model = resolve_model(spec.model, path.parent)
    except ModelError as exc:
        raise ScenarioError(
            exc.message, file=str(path), key="model", line=line_of(data, ("model",)), fix=exc.fix
        ) from exc
    _check_inputs(path, data, spec, model)
    return LoadedScenario(path=path, text=text, spec=spec, model=model)


def _validate(path: Path, data: CommentedMap) -> Scenario:
    if "iterations" in data and "duration" in data:
        raise ScenarioError(
            "give either iterations or duration, not both",
            file=str(path),
            key="duration",
            line=line_of(data, ("duration",)),
            fix="remove one of the two keys",
        )
    try:
        return Scenario.model_validate(plain(data))
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = tuple(error["loc"])
        raise ScenarioError(
            _message(error),
            file=str(path),
            key=key_path(loc),
            line=line_of(data, loc),
            fix=_fix(loc, error),
        ) from exc


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def _fix(loc: tuple[Any, ...], error: dict[str, Any]) -> str | None:
    parent = loc[:-1]
    if error["type"] == "extra_forbidden":
        known = _known_keys(parent)
        return f"known keys here: {', '.join(known)}" if known else "remove the key"
    if error["type"] == "missing":
        return f"add `{loc[-1]}:`"
    if loc and loc[0] == "matrix" and len(loc) > 1 and loc[1] in REGISTRY:
        return REGISTRY[loc[1]].doc
    return "see `mnn-stress schema` for the allowed values"


def _known_keys(parent: tuple[Any, ...]) -> list[str]:
    models: dict[tuple[Any, ...], type[BaseModel]] = {
        (): Scenario,
        ("matrix",): Matrix,
        ("record",): RecordSpec,
    }
    if len(parent) == 2 and parent[0] == "inputs":
        return list(InputSpec.model_fields)
    model = models.get(parent)
    return list(model.model_fields) if model else []


def _check_inputs(path: Path, data: CommentedMap, spec: Scenario, model: ModelInfo) -> None:
    names = [t.name for t in model.inputs]
    for tensor in model.inputs:
        if tensor.dtype not in INPUT_DTYPES:
            raise ScenarioError(
                f"input {tensor.name!r} is {tensor.dtype}; mnn-stress feeds only "
                f"{', '.join(INPUT_DTYPES)} host tensors",
                file=str(path),
                key="model",
                line=line_of(data, ("model",)),
                fix="use a model whose inputs have those types",
            )
    for name, given in spec.inputs.items():
        tensor = model.input(name)
        loc = ("inputs", name)
        if tensor is None:
            raise ScenarioError(
                f"model {spec.model!r} has no input {name!r}",
                file=str(path),
                key=f"inputs.{name}",
                line=line_of(data, loc),
                fix=f"the model's inputs are: {', '.join(names)}",
            )
        if given.shape is not None and len(given.shape) != len(tensor.shape):
            raise ScenarioError(
                f"shape has rank {len(given.shape)}, the model's input has rank "
                f"{len(tensor.shape)} {list(tensor.shape)}",
                file=str(path),
                key=f"inputs.{name}.shape",
                line=line_of(data, (*loc, "shape")),
                fix=f"give {len(tensor.shape)} dimensions",
            )
    for tensor in model.inputs:
        if not tensor.is_static and (
            tensor.name not in spec.inputs or spec.inputs[tensor.name].shape is None
        ):
            raise ScenarioError(
                f"input {tensor.name!r} has a dynamic shape {list(tensor.shape)}",
                file=str(path),
                key=f"inputs.{tensor.name}.shape",
                line=line_of(data, ("inputs", tensor.name)) or line_of(data, ("model",)),
                fix=f"set inputs.{tensor.name}.shape to concrete dimensions",
            )
