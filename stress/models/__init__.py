"""Models under test: built-in ones generated with MNN's own Python API, or the user's files.

Model descriptions (``ModelInfo``) are plain data shared by the coordinator and workers;
anything that loads MNN runs in a separate probe process (``stress.models.probe``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from stress.contract import dtypes


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output: its name, shape (-1 for a dynamic dim) and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        count = 1
        for dim in self.shape:
            count *= max(dim, 1)
        # an unknown type counts as 8 bytes an element: ring sizes err on the large side
        entry = dtypes.by_name(self.dtype)
        return count * (entry.itemsize if entry is not dtypes.UNKNOWN else 8)

    @property
    def is_static(self) -> bool:
        return all(dim > 0 for dim in self.shape)


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: where its .mnn file is and what goes in and out."""

    ref: str
    path: str
    source: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    mnn_version: str
    extra: dict[str, Any] = field(default_factory=dict)

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        tensors = lambda items: tuple(  # noqa: E731
            TensorInfo(t["name"], tuple(t["shape"]), t["dtype"]) for t in items
        )
        return cls(
            ref=data["ref"],
            path=data["path"],
            source=data["source"],
            inputs=tensors(data["inputs"]),
            outputs=tensors(data["outputs"]),
            mnn_version=data["mnn_version"],
            extra=data.get("extra", {}),
        )
