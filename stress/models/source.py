"""What a scenario's model was when a run began, kept in the manifest: ``run --resume`` compares
it with the model now and refuses one that changed, instead of mixing two models in one run
(and blaming MNN for the mismatches)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stress.factors.convert import converter_args
from stress.models import ModelInfo, files
from stress.models.builtin import BUILDER_VERSION
from stress.models.resolve import CONVERTER_VERSION, mnn_version, resolve_model


@dataclass(frozen=True)
class ModelSource:
    """A model's origin and content: the file the scenario names (a built-in: its cached
    build), what made the MNN model from it, and for ONNX each ``convert`` value's flags."""

    ref: str  # as the scenario writes it
    kind: str  # ModelInfo.source: builtin, mnn or onnx
    file: str
    size: int
    sha256: str
    made_by: str | None  # builtin: its builder and MNN; onnx: the converter and MNN
    conversions: dict[str, list[str]]  # onnx: per convert value, the converter's arguments

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSource:
        """Strict: a missing or unknown key raises TypeError."""
        return cls(**data)


def source_of(model: ModelInfo, convert_values: Iterable[str] = ()) -> ModelSource:
    """``model`` as loaded, and the ``convert`` values its variants use (ONNX only)."""
    onnx = model.source == "onnx"
    file = Path(model.extra["onnx"] if onnx else model.path)
    return _source(model.ref, model.source, file, convert_values if onnx else ())


def _source(ref: str, kind: str, file: Path, convert_values: Iterable[str]) -> ModelSource:
    """The model file as it is now: its size and digest, and what makes it from ``ref``."""
    return ModelSource(
        ref=ref,
        kind=kind,
        file=str(file),
        size=file.stat().st_size,
        sha256=files.sha256_of(file),
        made_by=_made_by(kind),
        conversions={v: converter_args(v) for v in convert_values},
    )


def _made_by(kind: str) -> str | None:
    if kind == "builtin":
        return f"builder v{BUILDER_VERSION}, MNN {mnn_version()}"
    if kind == "onnx":
        return f"converter v{CONVERTER_VERSION}, MNN {mnn_version()}"
    return None


def source_now(recorded: ModelSource, scenario_dir: Path) -> ModelSource:
    """The same model reference read again now; a user's file is hashed, not converted or
    inspected (a built-in is resolved: its cache checks its build). ModelError when the file
    cannot be used any more."""
    if recorded.kind == "builtin":
        return source_of(resolve_model(recorded.ref, scenario_dir))
    path = files.model_path(recorded.ref, scenario_dir)
    return _source(recorded.ref, recorded.kind, path, recorded.conversions)


def changes(recorded: ModelSource, now: ModelSource) -> list[str]:
    """What differs between the model a run began with and the model now, in words."""
    found = []
    if (recorded.size, recorded.sha256) != (now.size, now.sha256):
        found.append(
            f"its content changed: {recorded.size:,} bytes with sha256 {recorded.sha256[:16]} "
            f"then, {now.size:,} bytes with sha256 {now.sha256[:16]} now"
        )
    if recorded.made_by != now.made_by:
        found.append(f"it was made by {recorded.made_by} then, by {now.made_by} now")
    for value, arguments in recorded.conversions.items():
        if now.conversions[value] != arguments:
            found.append(
                f"convert {value} gave the converter {arguments} then, {now.conversions[value]} now"
            )
    return found
