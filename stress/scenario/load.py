"""Loading a scenario file: YAML with line numbers, schema validation, the matrix's
combinations, and the checks only the model can answer (inputs: ``stress.scenario.inputs``;
backends). Every fault is a ScenarioError naming the file, the line, the key and a fix."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml.comments import CommentedMap

from stress.errors import ModelError, ScenarioError
from stress.factors import REGISTRY, shown
from stress.factors.convert import NONE as NO_FLAGS
from stress.factors.factor import Factor
from stress.models import ModelInfo
from stress.models.watch import LoadedFile, change
from stress.scenario.covering import MAX_TUPLES, CoveringError
from stress.scenario.inputs import check_inputs
from stress.scenario.matrix import (
    MAX_COMBINATIONS,
    combinations,
    first_conflict,
    given,
    size,
    tuples,
)
from stress.scenario.schema import (
    Exclusion,
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
    converted: dict[str, ModelInfo] = field(default_factory=dict)  # per ``convert`` value
    # each model file workers load, as it was when loaded (``stress.models.watch``)
    loaded: dict[str, LoadedFile] = field(default_factory=dict)

    def model_for(self, params: dict[str, Any]) -> ModelInfo:
        """The model a variant's workers load: its own conversion, or the scenario's."""
        return self.converted.get(params.get("convert", NO_FLAGS), self.model)

    def model_change(self, params: dict[str, Any]) -> str | None:
        """How the file a variant's workers load changed since it was loaded (None: not)."""
        path = self.model_for(params).path
        return change(path, self.loaded[path]) if path in self.loaded else None


def load_scenario(path: str | Path, text: str | None = None) -> LoadedScenario:
    """Parse, validate and check a scenario against its model; raise ScenarioError on any fault.
    ``text``: the scenario as it was when a run began (a resumed run), read as if at ``path``."""
    from stress.models.resolve import resolve_model

    path = Path(path)
    text, data = read_yaml(path, text)
    spec = _validate(path, data)
    _check_combinations(path, data, spec)
    try:
        model = resolve_model(spec.model, path.parent)
    except ModelError as exc:
        raise ScenarioError(
            _told(exc), file=str(path), key="model", line=line_of(data, ("model",)), fix=exc.fix
        ) from exc
    check_inputs(path, data, spec, model)
    _check_tolerance_outputs(path, data, spec, model)
    _check_backends(path, data, spec, model)
    _check_python(path, data, spec)
    _check_python_or_version(path, data, spec)
    _check_available(path, data, spec)
    converted = _conversions(path, data, spec, model)
    loaded = {m.path: LoadedFile.of(m.path) for m in (model, *converted.values())}
    return LoadedScenario(path, text, spec, model, converted, loaded)


def read_spec(path: str | Path) -> Scenario:
    """A scenario file checked against the schema only (no model, nothing of this machine):
    what ``envs prepare`` needs of a scenario whose environments do not exist yet."""
    path = Path(path)
    _, data = read_yaml(path)
    return _validate(path, data)


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
    _check_size(path, data, spec)
    for entries in ("exclude", "constraints"):
        for index, entry in enumerate(getattr(spec, entries)):
            if not entry.model_dump(exclude_none=True):
                raise error_at(
                    path, data, (entries, index), f"an empty {entries} entry", fix="name a factor"
                )
    # For pairwise and 3-way the rules are constraints of the generation, not errors.
    conflict = first_conflict(spec) if spec.strategy == "full" else None
    if conflict is not None:
        key = conflict.keys[0]
        pair = ", ".join(f"{k}: {shown(v)}" for k, v in conflict.values.items())
        raise ScenarioError(
            f"the matrix combines {conflict.message}",
            file=str(path),
            key=f"matrix.{key}",
            line=line_of(data, ("matrix", key)) or line_of(data, ("matrix",)),
            fix=f"drop one of the values, split the scenario, or add `exclude: [{{{pair}}}]`",
        )
    if next(_combinations(path, data, spec), None) is None:
        raise error_at(
            path,
            data,
            ("constraints",) if spec.constraints else ("exclude",),
            "no variant left to run: exclude, constraints and the factors' rules refuse every "
            "combination",
            fix="exclude less",
        )


def _check_size(path: Path, data: CommentedMap, spec: Scenario) -> None:
    """The full product, or a covering strategy's tuples, within their limits."""
    if spec.strategy != "full":
        count = tuples(spec, spec.strategy)
        if count > MAX_TUPLES:
            raise error_at(
                path,
                data,
                ("strategy",),
                f"{spec.strategy} must cover {count:,} tuples of values; the limit is "
                f"{MAX_TUPLES:,}",
                fix="use pairwise, split the scenario, or list fewer values",
            )
        return
    crossed = size(spec)
    if crossed > MAX_COMBINATIONS:
        raise error_at(
            path,
            data,
            ("matrix",),
            f"the matrix crosses {crossed:,} combinations; the limit is {MAX_COMBINATIONS:,}",
            fix="split it into several scenarios, list fewer values, or use `strategy: pairwise`",
        )


def _combinations(path: Path, data: CommentedMap, spec: Scenario) -> Iterator[dict[str, Any]]:
    """The combinations; constraints a covering array cannot satisfy in its search budget
    are the file's fault."""
    try:
        return combinations(spec)
    except CoveringError as exc:
        raise error_at(
            path,
            data,
            ("constraints",),
            f"{spec.strategy}: {exc}; the constraints are too entangled to satisfy",
            fix="give fewer or simpler exclude and constraints entries",
        ) from exc


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


def _check_available(path: Path, data: CommentedMap, spec: Scenario) -> None:
    """Every value the matrix uses can run on this machine (valgrind, a cgroup, an env)."""
    for name, values in given(spec).items():
        check = REGISTRY[name].unavailable
        for value in values if check is not None else []:
            found = check(value)
            if found is not None:
                raise error_at(path, data, ("matrix", name), found[0], fix=found[1])


def _conversions(
    path: Path, data: CommentedMap, spec: Scenario, model: ModelInfo
) -> dict[str, ModelInfo]:
    """The model converted once per ``convert`` value the matrix has besides ``{}`` (ONNX
    models only); each must have the same inputs and outputs as the plain conversion."""
    from stress.models.resolve import converted_with

    wanted = [v for v in given(spec).get("convert", []) if v != NO_FLAGS]
    if wanted and model.source != "onnx":
        raise error_at(
            path,
            data,
            ("matrix", "convert"),
            f"convert flags apply to ONNX models; {spec.model!r} is not one",
            fix="point model: at the .onnx file, or remove convert from the matrix",
        )
    found = {}
    for flags in wanted:
        try:
            found[flags] = converted_with(model, flags)
        except ModelError as exc:
            raise error_at(path, data, ("matrix", "convert"), _told(exc), fix=exc.fix) from exc
        names = [[t.name for t in m.inputs + m.outputs] for m in (model, found[flags])]
        if names[0] != names[1]:
            raise error_at(
                path,
                data,
                ("matrix", "convert"),
                f"converted with {flags} the model has other inputs or outputs: {names[1]}",
                fix="remove that value of convert",
            )
    return found


def _check_python(path: Path, data: CommentedMap, spec: Scenario) -> None:
    """``python:`` must be an executable file (relative paths: to the scenario's folder)."""
    if spec.python is None:
        return
    interpreter = (path.parent / spec.python).expanduser()
    if not (interpreter.is_file() and os.access(interpreter, os.X_OK)):
        raise error_at(
            path,
            data,
            ("python",),
            f"{spec.python} is not an executable file",
            fix="give the path of a Python interpreter with numpy and MNN installed "
            "(e.g. /path/to/venv/bin/python), or remove the key",
        )
    spec.python = str(interpreter.absolute())


def _check_python_or_version(path: Path, data: CommentedMap, spec: Scenario) -> None:
    """``python:`` and an ``mnn_version`` other than ``installed`` each choose the workers'
    interpreter: one of them must go."""
    from stress.versions.releases import INSTALLED

    asked = [v for v in given(spec).get("mnn_version", []) if v != INSTALLED]
    if spec.python is not None and asked:
        raise error_at(
            path,
            data,
            ("python",),
            f"chooses the workers' interpreter, and so does mnn_version: {', '.join(asked)}",
            fix="remove `python:` (each mnn_version runs in a cached environment of its own), "
            "or the mnn_version values other than `installed`",
        )


def _told(exc: ModelError) -> str:
    """A model's error as said in the scenario's: with the file it names (the model cache)."""
    return f"{exc.file}: {exc.message}" if exc.file else exc.message


def _message(error: dict[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "required key is missing"
    return str(error["msg"]).removeprefix("Value error, ")


def _fix(loc: tuple[Any, ...], error: dict[str, Any]) -> str | None:
    parent = loc[:-1]
    if error["type"] == "extra_forbidden":
        misplaced = _misplaced(parent, str(loc[-1]))
        if misplaced:
            return misplaced
        known = _known_keys(parent)
        by_case = {key.lower(): key for key in known}  # `Api:` means `api:`
        close = [by_case[str(loc[-1]).lower()]] if str(loc[-1]).lower() in by_case else []
        close = close or difflib.get_close_matches(str(loc[-1]), known, n=3, cutoff=0.5)
        if close:
            return f"did you mean {' or '.join(f'`{key}`' for key in close)}?"
        return f"known keys here: {', '.join(known)}" if known else "remove the key"
    if error["type"] == "missing":
        return f"add `{loc[-1]}:`"
    if loc and loc[0] == "matrix" and len(loc) > 1 and loc[1] in REGISTRY:
        return _allowed(REGISTRY[loc[1]])
    if "has no unit" in str(error["msg"]):
        return "give the duration with its unit: 500ms, 30s, 2m or 8h"
    return "see `mnn-stress schema` for the allowed values"


def _misplaced(parent: tuple[Any, ...], key: str) -> str | None:
    """The fix for a factor written at the top level, or a scenario key under ``matrix:``."""
    if parent == () and key in REGISTRY:
        example = shown(REGISTRY[key].default)
        return f"`{key}` is a factor: put it under `matrix:`, e.g. matrix: {{{key}: [{example}]}}"
    if parent == ("matrix",) and key in Scenario.model_fields:
        return f"`{key}` is a scenario key, not a factor: write it at the top level, not in matrix"
    return None


def _allowed(factor: Factor) -> str:
    """What a matrix key takes, as a fix: its values, or the kind and range of them."""
    off, example = (" or off" if factor.off else ""), f"e.g. [{shown(factor.default)}]"
    if factor.choices:
        return f"write a list of values from: {', '.join(map(str, factor.choices))}{off}; {example}"
    kind = {int: "whole numbers", float: "numbers", str: "words"}.get(factor.kind, "values")
    if factor.minimum is not None and factor.maximum is not None:
        kind += f" from {factor.minimum} to {factor.maximum}"
    elif factor.minimum is not None:
        kind += f" of at least {factor.minimum}"
    return f"write a list of {kind}{off}; {example}"


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
    if len(parent) == 2 and parent[0] in ("exclude", "constraints"):
        return list(Exclusion.model_fields)
    model = models.get(parent)
    return list(model.model_fields) if model else []
