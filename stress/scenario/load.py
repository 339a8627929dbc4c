"""Loading a scenario file: YAML with line numbers, schema validation, and the checks only
the model can answer (input names, types and shapes). Every fault is a ScenarioError naming
the file, the line, the key and a fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap

from stress.errors import ModelError, ScenarioError
from stress.factors import REGISTRY
from stress.models import ModelInfo, TensorInfo
from stress.scenario.matrix import MAX_COMBINATIONS, combinations, first_conflict, size
from stress.scenario.schema import (
    INPUT_DTYPES,
    MAX_INPUT_BYTES,
    InputSpec,
    Matrix,
    RecordSpec,
    Scenario,
)
from stress.scenario.yaml_source import key_path, line_of, plain, read_yaml


@dataclass(frozen=True)
class LoadedScenario:
    """A validated scenario with its source text and resolved model."""

    path: Path
    text: str
    spec: Scenario
    model: ModelInfo


def load_scenario(path: str | Path) -> LoadedScenario:
    """Parse, validate and check a scenario against its model; raise ScenarioError on any fault."""
    from stress.models.resolve import resolve_model

    path = Path(path)
    text, data = read_yaml(path)
    spec = _validate(path, data)
    _check_combinations(path, data, spec)
    try:
        model = resolve_model(spec.model, path.parent)
    except ModelError as exc:
        raise ScenarioError(
            exc.message, file=str(path), key="model", line=line_of(data, ("model",)), fix=exc.fix
        ) from exc
    _check_inputs(path, data, spec, model)
    _check_backends(path, data, spec, model)
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
        return Scenario.model_validate(plain(data, file=str(path)))
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


def _check_combinations(path: Path, data: CommentedMap, spec: Scenario) -> None:
    """Every combination the matrix makes must make sense, and at least one must remain."""
    crossed = size(spec)
    if crossed > MAX_COMBINATIONS:
        raise _error_at(
            path,
            data,
            ("matrix",),
            f"the matrix crosses {crossed:,} combinations; the limit is {MAX_COMBINATIONS:,}",
            fix="split it into several scenarios, or list fewer values",
        )
    for index, entry in enumerate(spec.exclude):
        if not entry.model_dump(exclude_none=True):
            raise _error_at(
                path, data, ("exclude", index), "an empty exclude entry", fix="name a factor"
            )
    conflict = first_conflict(spec)
    if conflict is not None:
        key = conflict.keys[0]
        pair = ", ".join(f"{k}: {v}" for k, v in conflict.values.items())
        raise ScenarioError(
            f"the matrix combines {conflict.message}",
            file=str(path),
            key=f"matrix.{key}",
            line=line_of(data, ("matrix", key)) or line_of(data, ("matrix",)),
            fix=f"drop one of the values, split the scenario, or add `exclude: [{{{pair}}}]`",
        )
    if next(combinations(spec), None) is None:
        raise _error_at(
            path, data, ("exclude",), "exclude: leaves no variant to run", fix="exclude less"
        )


def _check_backends(path: Path, data: CommentedMap, spec: Scenario, model: ModelInfo) -> None:
    """A backend this MNN wheel lacks would silently run on the CPU: refuse it."""
    from stress.models.resolve import available_backends

    wanted = sorted({p["backend"] for p in combinations(spec)} - {"cpu"})
    if not wanted:
        return
    available = available_backends(model.path)
    missing = [b for b in wanted if b not in available]
    if missing:
        raise _error_at(
            path,
            data,
            ("matrix", "backend"),
            f"backend {', '.join(missing)} is not in this MNN wheel ({model.mnn_version} has: "
            f"{', '.join(available) or 'none'}); MNN would silently run on the CPU instead",
            fix=f"use one of: {', '.join(available)}",
        )


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
    """What the model decides: input types, which names exist, and which shapes can work."""
    _check_dtypes(path, data, model)
    for name, given in spec.inputs.items():
        tensor = model.input(name)
        if tensor is None:
            names = ", ".join(t.name for t in model.inputs)
            raise _error_at(
                path,
                data,
                ("inputs", name),
                f"model {spec.model!r} has no input {name!r}",
                fix=f"the model's inputs are: {names}",
            )
        if given.shape is not None:
            _check_shape(path, data, given.shape, tensor)
    _check_dynamic_shapes_given(path, data, spec, model)


def _error_at(
    path: Path, data: CommentedMap, loc: tuple[Any, ...], message: str, *, fix: str
) -> ScenarioError:
    return ScenarioError(
        message, file=str(path), key=key_path(loc), line=line_of(data, loc), fix=fix
    )


def _check_dtypes(path: Path, data: CommentedMap, model: ModelInfo) -> None:
    for tensor in model.inputs:
        if tensor.dtype not in INPUT_DTYPES:
            raise _error_at(
                path,
                data,
                ("model",),
                f"input {tensor.name!r} is {tensor.dtype}; mnn-stress feeds only "
                f"{', '.join(INPUT_DTYPES)} host tensors",
                fix="use a model whose inputs have those types",
            )


def _check_shape(path: Path, data: CommentedMap, shape: list[int], tensor: TensorInfo) -> None:
    """A given shape may set only the model's dynamic (-1) dimensions: an input larger than a
    fixed shape makes MNN read memory it never wrote, and the run reports false differences."""
    loc = ("inputs", tensor.name, "shape")
    declared = list(tensor.shape)
    if len(shape) != len(declared):
        raise _error_at(
            path,
            data,
            loc,
            f"shape has rank {len(shape)}, the model's input has rank {len(declared)} {declared}",
            fix=f"give {len(declared)} dimensions",
        )
    wrong = [i for i, dim in enumerate(declared) if dim > 0 and shape[i] != dim]
    if wrong and tensor.is_static:
        raise _error_at(
            path,
            data,
            loc,
            f"the model's input {tensor.name!r} has the fixed shape {declared}; "
            "MNN would compute on memory it never wrote",
            fix="remove `shape`, or use a model whose input has dynamic (-1) dimensions",
        )
    if wrong:
        raise _error_at(
            path,
            data,
            (*loc, wrong[0]),
            f"the model's input {tensor.name!r} has the shape {declared}; only its -1 "
            "dimensions may be chosen",
            fix=f"give {[dim if dim > 0 else shape[i] for i, dim in enumerate(declared)]}",
        )
    _check_input_size(path, data, TensorInfo(tensor.name, tuple(shape), tensor.dtype))


def _check_input_size(path: Path, data: CommentedMap, given: TensorInfo) -> None:
    if given.nbytes > MAX_INPUT_BYTES:
        raise _error_at(
            path,
            data,
            ("inputs", given.name, "shape"),
            f"{list(given.shape)} {given.dtype} is {given.nbytes:,} bytes, more than the limit "
            f"of {MAX_INPUT_BYTES:,} for one input",
            fix="use smaller dimensions",
        )


def _check_dynamic_shapes_given(
    path: Path, data: CommentedMap, spec: Scenario, model: ModelInfo
) -> None:
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
