"""Loading a scenario file: YAML with line numbers, schema validation, the matrix's
combinations, and the checks only the model can answer (inputs: ``stress.scenario.inputs``;
backends). Every fault is a ScenarioError naming the file, the line, the key and a fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap

from stress.errors import ModelError, ScenarioError
from stress.factors import REGISTRY
from stress.models import ModelInfo
from stress.scenario.inputs import check_inputs
from stress.scenario.matrix import MAX_COMBINATIONS, combinations, first_conflict, size
from stress.scenario.schema import (
    InputSpec,
    Matrix,
    OutputTolerance,
    RecordSpec,
    Scenario,
    ToleranceSpec,
)
from stress.scenario.yaml_source import error_at, key_path, line_of, plain, read_yaml


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
    check_inputs(path, data, spec, model)
    _check_tolerance_outputs(path, data, spec, model)
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
        raise error_at(
            path,
            data,
            ("matrix",),
            f"the matrix crosses {crossed:,} combinations; the limit is {MAX_COMBINATIONS:,}",
            fix="split it into several scenarios, or list fewer values",
        )
    for index, entry in enumerate(spec.exclude):
        if not entry.model_dump(exclude_none=True):
            raise error_at(
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
        raise error_at(
            path, data, ("exclude",), "exclude: leaves no variant to run", fix="exclude less"
        )


def _check_tolerance_outputs(
    path: Path, data: CommentedMap, spec: Scenario, model: ModelInfo
) -> None:
    """A per-output tolerance must name an output of the model."""
    names = [t.name for t in model.outputs]
    for name in spec.tolerance.outputs:
        if name not in names:
            raise error_at(
                path,
                data,
                ("tolerance", "outputs", name),
                f"the model has no output {name!r}",
                fix=f"its outputs are: {', '.join(names)}",
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
        raise error_at(
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
        ("tolerance",): ToleranceSpec,
    }
    if len(parent) == 3 and parent[:2] == ("tolerance", "outputs"):
        return list(OutputTolerance.model_fields)
    if len(parent) == 2 and parent[0] == "inputs":
        return list(InputSpec.model_fields)
    model = models.get(parent)
    return list(model.model_fields) if model else []
