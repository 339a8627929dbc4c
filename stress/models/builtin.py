"""Built-in models, generated with ``MNN.expr`` and saved with ``MNN.expr.save``.

Imports MNN: run only inside the probe process. Weights come from a fixed seed, so a model
built twice by the same MNN version is the same model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Bump when a builder changes: cached files carry it in their name.
BUILDER_VERSION = 4


@dataclass(frozen=True)
class Builtin:
    name: str
    summary: str
    build: Callable[[str], None]


def _conv(x, cin: int, cout: int, rng: np.random.Generator, relu: bool = True):
    """A 3x3 SAME convolution on an NC4HW4 variable (MNN's native conv layout)."""
    import MNN.expr as F

    scale = (2.0 / (cin * 9)) ** 0.5
    weight = (rng.standard_normal((cout, cin, 3, 3)) * scale).astype(np.float32)
    bias = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    w = F.const(weight, list(weight.shape), F.NCHW)
    b = F.const(bias, [cout], F.NCHW)
    y = F.conv2d(x, w, b, (1, 1), (0, 0), (1, 1), 1, F.SAME)
    return F.relu(y) if relu else y


def _placeholder(name: str, shape: list[int]):
    import MNN.expr as F

    var = F.placeholder(shape, F.NCHW, F.float)
    var.name = name
    return var


def _save(output, name: str, path: str) -> None:
    import MNN.expr as F

    output.name = name
    F.save([output], path)


def build_tiny(path: str) -> None:
    """Two small convolutions: tens of microseconds per run, so harness overhead shows."""
    import MNN.expr as F

    rng = np.random.default_rng(1)
    x = _placeholder("x", [1, 3, 24, 24])
    h = _conv(F.convert(x, F.NC4HW4), 3, 8, rng)
    h = _conv(h, 8, 8, rng)
    # Pool to 8x6x6 so each iteration records 1 KiB, not 18 KiB.
    _save(F.convert(F.avg_pool(h, [4, 4], [4, 4]), F.NCHW), "y", path)


def build_three_input(path: str) -> None:
    """The three inputs of the original report, fused through NC4HW4 convolutions."""
    import MNN.expr as F

    rng = np.random.default_rng(2)
    source = _placeholder("source_img", [1, 3, 208, 160])
    ref = _placeholder("ref_img", [1, 15, 208, 160])
    audio = _placeholder("audio_feature", [1, 29, 5])
    h = F.convert(F.concat([source, ref], 1), F.NC4HW4)
    h = _conv(h, 18, 16, rng)
    h = _conv(h, 16, 16, rng)
    audio_weight = (rng.standard_normal((145, 16)) * 0.1).astype(np.float32)
    audio_gain = F.matmul(F.reshape(audio, [1, 145]), F.const(audio_weight, [145, 16], F.NCHW))
    h = F.convert(h, F.NCHW) + F.reshape(audio_gain, [1, 16, 1, 1])
    h = _conv(F.convert(h, F.NC4HW4), 16, 3, rng, relu=False)
    _save(F.sigmoid(F.convert(h, F.NCHW)), "output", path)


def build_deep(path: str) -> None:
    """Twelve 32-channel convolutions on 64x64 plus pooling: milliseconds per run."""
    import MNN.expr as F

    rng = np.random.default_rng(3)
    x = _placeholder("x", [1, 3, 64, 64])
    h = _conv(F.convert(x, F.NC4HW4), 3, 32, rng)
    for _ in range(11):
        h = _conv(h, 32, 32, rng)
    _save(F.reduce_mean(F.convert(h, F.NCHW), [2, 3]), "logits", path)


def build_nc4hw4_int(path: str) -> None:
    """A float and an int input, and an output left in MNN's packed NC4HW4 layout: y = 2x + k.
    Three channels pad to four in NC4HW4, so reading the raw buffer as NCHW gives visibly
    wrong values; and an int fed as float gives wrong k. Both have a numpy reference."""
    import MNN.expr as F

    x = _placeholder("x", [1, 3, 5, 7])
    k = F.placeholder([1, 3, 5, 7], F.NCHW, F.int)
    k.name = "k"
    total = x * F.scalar(2.0) + F.cast(k, F.float)
    _save(F.convert(total, F.NC4HW4), "y", path)


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin(
            "tiny",
            "one 1x3x24x24 input, two 3x3 convs, 4x4 pooling (tens of microseconds)",
            build_tiny,
        ),
        Builtin(
            "three_input",
            "source_img 1x3x208x160, ref_img 1x15x208x160, audio_feature 1x29x5 (milliseconds)",
            build_three_input,
        ),
        Builtin("deep", "twelve 32-channel convs on 1x3x64x64 (milliseconds)", build_deep),
        Builtin(
            "nc4hw4_int",
            "x float32 and k int32 1x3x5x7 -> y = 2x + k, output left in NC4HW4",
            build_nc4hw4_int,
        ),
    )
}
