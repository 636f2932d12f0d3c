"""The layered search space of the offline proposer, rendered to clean standalone PyTorch code.

A point in the space is a tuple of choice indices, one per decision. The same decisions serve
images (Conv2d), sequences (Conv1d) and tabular data (Linear): their meaning depends on the modality.
Tabular data may have no hidden layer (a linear model). `smallest` is the fewest parameters the space
can build for a data shape, counted with `param_count`, the renderer's arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

MAX_BLOCKS = 4
ACTIVATIONS = {"relu": "nn.ReLU()", "gelu": "nn.GELU()", "silu": "nn.SiLU()"}


@dataclass(frozen=True)
class Decision:
    name: str
    choices: tuple


@cache
def decisions_for(modality: str) -> tuple[Decision, ...]:
    """The ordered decisions the controller emits for a modality."""
    if modality == "tabular":
        per_block = [Decision("width", (16, 32, 64, 128, 256)), Decision("norm", (False, True))]
        head = [Decision("dropout", (0.0, 0.1, 0.3))]
    else:
        kernels = (3, 5) if modality == "image" else (3, 5, 7, 9)
        per_block = [
            Decision("channels", (8, 12, 16, 24, 32, 48)),
            Decision("kernel", kernels),
            Decision("downsample", (False, True)),
            Decision("residual", (False, True)),
        ]
        head = [
            Decision("norm", (False, True)),
            Decision("pool", ("avg", "max", "flatten")),
            Decision("dropout", (0.0, 0.1, 0.3)),
        ]
    fewest = 0 if modality == "tabular" else 1  # no hidden layer: a linear model
    blocks = Decision("blocks", tuple(range(fewest, MAX_BLOCKS + 1)))
    out = [blocks, Decision("activation", tuple(ACTIVATIONS))]
    for i in range(MAX_BLOCKS):
        out += [Decision(f"{d.name}{i}", d.choices) for d in per_block]
    return tuple(out + head)


def values(modality: str, choice_ids: tuple[int, ...]) -> dict:
    """Choice indices to named values."""
    decisions = decisions_for(modality)
    if len(choice_ids) != len(decisions):
        raise ValueError(f"{modality} space has {len(decisions)} decisions, got {len(choice_ids)}")
    return {d.name: d.choices[i] for d, i in zip(decisions, choice_ids, strict=True)}


def sample_uniform(modality: str, rng: np.random.Generator) -> tuple[int, ...]:
    """Random search over the same space: the baseline every strategy is measured against."""
    return tuple(int(rng.integers(len(d.choices))) for d in decisions_for(modality))


_RESIDUAL = '''

class Residual(nn.Module):
    """x + body(x), with a 1x1 projection when the channel count changes."""

    def __init__(self, body, channels_in, channels_out, conv):
        super().__init__()
        self.body = body
        self.skip = nn.Identity() if channels_in == channels_out else conv(channels_in, channels_out, 1)

    def forward(self, x):
        return self.skip(x) + self.body(x)
'''


def render(modality: str, choice_ids: tuple[int, ...]) -> str:
    """Standalone candidate source with ``build_model(input_shape, num_classes)``."""
    v = values(modality, choice_ids)
    act = ACTIVATIONS[v["activation"]]
    if modality == "tabular":
        return _render_mlp(v, act)
    dim = "2d" if modality == "image" else "1d"
    lines: list[str] = []
    in_ch = "input_shape[0]"
    uses_residual = False
    for i in range(v["blocks"]):
        c, k = v[f"channels{i}"], v[f"kernel{i}"]
        norm = f"nn.BatchNorm{dim}({c}), " if v["norm"] else ""
        stride = ", stride=2" if v[f"downsample{i}"] else ""
        body = f"nn.Conv{dim}({in_ch}, {c}, {k}, padding={k // 2}{stride}), {norm}{act}"
        if v[f"residual{i}"] and not stride:
            uses_residual = True
            lines.append(f"Residual(nn.Sequential({body}), {in_ch}, {c}, nn.Conv{dim}),")
        else:
            lines.append(body + ",")
        in_ch = str(c)
    pool = {
        "avg": f"nn.AdaptiveAvgPool{dim}(1), nn.Flatten(),",
        "max": f"nn.AdaptiveMaxPool{dim}(1), nn.Flatten(),",
        "flatten": "nn.Flatten(),",
    }[v["pool"]]
    lines.append(pool)
    features = in_ch if v["pool"] != "flatten" else f"{in_ch} * _spatial(input_shape, {_strides(v)})"
    if v["dropout"]:
        lines.append(f"nn.Dropout({v['dropout']}),")
    lines.append(f"nn.Linear({features}, num_classes),")
    body = "\n        ".join(lines)
    helper = _SPATIAL if v["pool"] == "flatten" else ""
    return (
        "import torch.nn as nn\n"
        + (_RESIDUAL if uses_residual else "")
        + helper
        + "\n\ndef build_model(input_shape, num_classes):\n"
        + f"    return nn.Sequential(\n        {body}\n    )\n"
    )


_SPATIAL = '''

def _spatial(input_shape, strides):
    """Number of positions left after `strides` stride-2 convolutions with same padding."""
    n = 1
    for size in input_shape[1:]:
        for _ in range(strides):
            size = (size + 1) // 2
        n *= size
    return n
'''


def _strides(v: dict) -> int:
    return sum(bool(v[f"downsample{i}"]) for i in range(v["blocks"]))


def _render_mlp(v: dict, act: str) -> str:
    lines, width = ["nn.Flatten(),"], "input_shape[0]"
    for i in range(v["blocks"]):
        w = v[f"width{i}"]
        norm = f" nn.BatchNorm1d({w})," if v[f"norm{i}"] else ""
        lines.append(f"nn.Linear({width}, {w}),{norm} {act},")
        width = str(w)
    if v["dropout"]:
        lines.append(f"nn.Dropout({v['dropout']}),")
    lines.append(f"nn.Linear({width}, num_classes),")
    body = "\n        ".join(lines)
    return f"import torch.nn as nn\n\n\ndef build_model(input_shape, num_classes):\n    return nn.Sequential(\n        {body}\n    )\n"


def param_count(
    modality: str, choice_ids: tuple[int, ...], input_shape: tuple[int, ...], num_classes: int
) -> int:
    """Every number the rendered model's tensors hold (a BatchNorm carries 4 per channel and a step
    counter), computed from the decisions alone: lets the proposer stay inside a hard limit before any
    code runs. The scored artifact holds a little less where the exporter folds a BatchNorm into the
    layer before it, and a few more where a layer exports shape constants."""
    v = values(modality, choice_ids)
    if modality == "tabular":
        n, width = 0, input_shape[0]
        for i in range(v["blocks"]):
            w = v[f"width{i}"]
            n += width * w + w + (4 * w + 1 if v[f"norm{i}"] else 0)
            width = w
        return n + width * num_classes + num_classes
    dims = 2 if modality == "image" else 1
    n, in_ch = 0, input_shape[0]
    for i in range(v["blocks"]):
        c, k = v[f"channels{i}"], v[f"kernel{i}"]
        n += in_ch * c * k**dims + c + (4 * c + 1 if v["norm"] else 0)
        if v[f"residual{i}"] and not v[f"downsample{i}"] and in_ch != c:
            n += in_ch * c + c
        in_ch = c
    features = in_ch
    if v["pool"] == "flatten":
        spatial = 1
        for size in input_shape[1:]:
            for _ in range(_strides(v)):
                size = (size + 1) // 2
            spatial *= size
        features = in_ch * spatial
    return n + features * num_classes + num_classes


def smallest(modality: str, input_shape: tuple[int, ...], num_classes: int) -> tuple[tuple[int, ...], int]:
    """The point of the space with the fewest parameters for this data, and that count (``param_count``):
    for each number of blocks, the other decisions lowered one at a time until none lowers the count."""
    n_blocks = len(decisions_for(modality)[0].choices)
    points = [_descend(modality, blocks, input_shape, num_classes) for blocks in range(n_blocks)]
    return min(((p, param_count(modality, p, input_shape, num_classes)) for p in points), key=lambda x: x[1])


def _descend(modality: str, blocks: int, input_shape: tuple[int, ...], num_classes: int) -> tuple[int, ...]:
    """Coordinate descent on ``param_count`` from the first choices, the number of blocks held; ties go to
    the first choice, so it ends."""
    decisions = decisions_for(modality)
    point = [blocks] + [0] * (len(decisions) - 1)
    changed = True
    while changed:
        changed = False
        for step in range(1, len(decisions)):
            sizes = [
                param_count(modality, (*point[:step], i, *point[step + 1 :]), input_shape, num_classes)
                for i in range(len(decisions[step].choices))
            ]
            changed |= sizes.index(min(sizes)) != point[step]
            point[step] = sizes.index(min(sizes))
    return tuple(point)


def describe(modality: str, choice_ids: tuple[int, ...]) -> str:
    """A few words for a point's architecture, e.g. 'a linear model'."""
    v = values(modality, choice_ids)
    n = v["blocks"]
    if n == 0:
        return "a linear model"
    if modality == "tabular":
        widths = ", ".join(str(v[f"width{i}"]) for i in range(n))
        return f"an MLP with {n} hidden layer{'s' * (n > 1)} of width {widths}"
    channels = ", ".join(str(v[f"channels{i}"]) for i in range(n))
    return f"{n} convolution{'s' * (n > 1)} of {channels} channels and a linear head"
