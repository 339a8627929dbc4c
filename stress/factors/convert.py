"""``convert``: the flags MNN's converter is given for a scenario's ONNX model (``fp16``,
``optimize_level``, ``keep_input_format``), the ones users are advised to try when outputs look
wrong. Each distinct value is converted once, when the scenario is loaded, and cached by the
ONNX file's content and the flags (``stress.models.resolve``); each variant's workers load their
own conversion. A scenario writes a mapping (``{fp16: true, optimize_level: 2}``); params and the
Parquet column hold its canonical text, flags sorted, ``{}`` for none."""

from __future__ import annotations

from typing import Any

from stress.factors.factor import Factor

NONE = "{}"
# flag -> (allowed values, converter arguments for a value)
FLAGS: dict[str, tuple[tuple[Any, ...], Any]] = {
    "fp16": ((False, True), lambda on: ["--fp16"] if on else []),
    "optimize_level": ((0, 1, 2), lambda level: ["--optimizeLevel", str(level)]),
    "keep_input_format": (
        (False, True),
        lambda keep: [f"--keepInputFormat={'true' if keep else 'false'}"],
    ),
}


def canonical(written: Any) -> Any:
    """A mapping of flags as its canonical text (checked); anything else is left for the
    type check to refuse."""
    if not isinstance(written, dict):
        return written
    for name, value in written.items():
        if name not in FLAGS:
            raise ValueError(f"unknown converter flag {name!r}: known are {', '.join(FLAGS)}")
        allowed = FLAGS[name][0]
        if type(value) is not type(allowed[0]) or value not in allowed:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(map(str, allowed))}")
    text = ", ".join(f"{k}: {_yaml(written[k])}" for k in sorted(written))
    return "{" + text + "}"


def _yaml(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def flags(text: str) -> dict[str, Any]:
    """The canonical text back as a mapping."""
    found: dict[str, Any] = {}
    for item in filter(None, text.strip("{}").split(", ")):
        name, _, value = item.partition(": ")
        found[name] = {"true": True, "false": False}.get(value, value)
        if name == "optimize_level":
            found[name] = int(value)
    return found


def converter_args(text: str) -> list[str]:
    """The arguments MNN's converter gets for these flags."""
    return [arg for name, value in flags(text).items() for arg in FLAGS[name][1](value)]


def _check(value: Any) -> str | None:
    if not (value.startswith("{") and value.endswith("}")):
        return f"{value!r} is not a flag mapping: write e.g. {{fp16: true}}, or {{}} for none"
    try:
        return None if canonical(flags(value)) == value else f"{value!r} is not a flag mapping"
    except (ValueError, KeyError) as exc:
        return str(exc)


CONVERT = Factor(
    name="convert",
    kind=str,
    default=NONE,
    doc="Converter flags for an ONNX model, as a mapping: fp16 (true: weights stored as "
    "half floats), optimize_level (0, 1, 2), keep_input_format (true, false). {} converts "
    "with the converter's defaults; each distinct value is converted once and cached.",
    parse=canonical,
    value_check=_check,
)

FACTORS = (CONVERT,)
