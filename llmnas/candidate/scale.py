"""Compound scaling (EfficientNet's rule, without resolution) of a candidate's code, made with libcst:
nothing here runs candidate code.

For a coefficient phi, depth grows by ALPHA**phi and width by BETA**phi with ALPHA * BETA**2 = 2, so
each unit of phi about doubles the parameters. Width is every hidden channel or feature count the width
mutation can change safely (mutations.width_plans); depth is the number of hidden Linear/Conv layers,
grown by repeating blocks (a shape-preserving copy of a layer with its norms and activations), spread
over the layers from the last one back. `scale_to` picks the largest phi whose estimated size fits a
parameter budget; the estimate counts the layers whose sizes the code states (layers.PARAMS) and is
calibrated on the parent's measured count. The sandbox's count stays the judge.
"""

from __future__ import annotations

import math

import libcst as cst

from llmnas.candidate.cst_edits import Edit, int_value, same_ints
from llmnas.candidate.layers import CONVS, NORMS, Change, Layer, MutationError, Parsed, dims
from llmnas.candidate.mutations import rounded, width_edits, width_plans

ALPHA = 1.2  # depth per unit of phi: EfficientNet's
BETA = math.sqrt(2 / ALPHA)  # width per unit of phi: ALPHA * BETA**2 = 2
PHI_STEP = 0.01
PHI_MAX = 6.0  # at most about 2**6 times the parameters


def compound(code: str, phi: float) -> tuple[str, str]:
    """``code`` with its widths times BETA**phi, then its hidden layers times ALPHA**phi: (new code, one
    line saying what changed). Raises MutationError when it does not parse."""
    ctx = Parsed(code)
    edits: dict[cst.CSTNode, Edit] = {}
    changed = []
    for v, (word, nodes, step) in width_plans(ctx).items():
        new = rounded(v * BETA**phi, step)
        if new != v:
            edits |= width_edits(nodes, v, new)
            changed.append(f"{v}->{new} {word}")
    if edits:
        ctx = Parsed(ctx.render(Change("", edits)))
    blocks = [layer for layer in ctx.sized if layer not in ctx.classifiers and ctx.out(layer) is not None]
    extra = max(0, math.floor(len(blocks) * ALPHA**phi + 0.5) - len(blocks))
    copies: dict[Layer, tuple[str, int]] = {}
    for i in range(extra):  # round-robin from the last block back
        layer = blocks[-1 - i % len(blocks)]
        copies[layer] = (_repeat(ctx, layer), copies.get(layer, ("", 0))[1] + 1)
    out = ctx.render(Change("", ctx.deepen(copies))) if copies else ctx.module.code
    what = f"scale: phi {phi:.2f}, {len(blocks)} -> {len(blocks) + extra} hidden layers"
    return out, what + (f", widths {', '.join(changed)}" if changed else "")


def _repeat(ctx: Parsed, layer: Layer) -> str:
    """A layer that keeps ``layer``'s output shape: same width, its kernel (odd) and groups, stride 1."""
    c = ctx.code(ctx.out(layer))
    d = dims(layer.name)
    if not d:
        return f"Linear({c}, {c})"
    k = same_ints(ctx.value(layer, "kernel_size")) if layer.name in CONVS else None
    k = k if k and k % 2 else 3
    g = int_value(ctx.value(layer, "groups"))
    out = int_value(ctx.out(layer))
    groups = f", groups={g}" if g and g > 1 and out and out % g == 0 else ""
    return f"Conv{d}d({c}, {c}, {k}, padding={k // 2}{groups})"


def estimate_params(code: str, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Parameters of the layers whose sizes the code states: literals, ``num_classes``, ``input_shape[i]``
    and their sums, products and quotients. Other layers count 0."""
    ctx = Parsed(code)
    names = {"num_classes": num_classes, "input_shape": tuple(input_shape)}
    return sum(_layer_params(ctx, layer, names) or 0 for layer in ctx.layers)


def _layer_params(ctx: Parsed, layer: Layer, names: dict) -> int | None:
    def value(param: str) -> int | None:
        node = ctx.value(layer, param)
        return None if node is None else _arith(node, names)

    bias = _flag(layer.call, "bias")
    if layer.name == "Linear":
        i, o = value("in_features"), value("out_features")
        return None if i is None or o is None else i * o + o * bias
    if layer.name.startswith("Conv"):
        i, o, g = value("in_channels"), value("out_channels"), value("groups") or 1
        ks = _sizes(ctx.value(layer, "kernel_size"), names, dims(layer.name))
        return None if i is None or o is None or ks is None or g <= 0 else i // g * o * ks + o * bias
    if layer.name == "LayerNorm":
        size = _sizes(ctx.value(layer, "normalized_shape"), names, 1)
        return None if size is None else 2 * size * _flag(layer.call, "elementwise_affine")
    if layer.name in NORMS:
        size = value("num_channels" if layer.name == "GroupNorm" else "num_features")
        affine = _flag(layer.call, "affine", default=not layer.name.startswith("InstanceNorm"))
        return None if size is None else 2 * size * affine
    return None


def _sizes(node: cst.BaseExpression | None, names: dict, repeat: int) -> int | None:
    """The product of a size given as a tuple or list (``(3, 5)``), or of one size ``repeat`` times."""
    if isinstance(node, cst.Tuple | cst.List):
        values = [_arith(e.value, names) for e in node.elements]
    else:
        values = [None if node is None else _arith(node, names)] * repeat
    return None if None in values else math.prod(values)


def _flag(call: cst.Call, keyword: str, default: bool = True) -> bool:
    """A boolean keyword argument given as True/False (anything else: the default)."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword and isinstance(arg.value, cst.Name):
            return {"True": True, "False": False}.get(arg.value.value, default)
    return default


def _arith(node: cst.BaseExpression, names: dict) -> int | None:
    """The value of a small integer expression of literals and known names, or None."""
    if isinstance(node, cst.Integer):
        return node.evaluated_value
    if isinstance(node, cst.Name) and isinstance(names.get(node.value), int):
        return names[node.value]
    if isinstance(node, cst.Subscript) and isinstance(node.value, cst.Name) and len(node.slice) == 1:
        seq, index = names.get(node.value.value), node.slice[0].slice
        i = _arith(index.value, names) if isinstance(index, cst.Index) else None
        return seq[i] if isinstance(seq, tuple) and i is not None and -len(seq) <= i < len(seq) else None
    if isinstance(node, cst.BinaryOperation):
        a, b = _arith(node.left, names), _arith(node.right, names)
        if a is None or b is None:
            return None
        op = node.operator
        if isinstance(op, cst.Add):
            return a + b
        if isinstance(op, cst.Subtract):
            return a - b
        if isinstance(op, cst.Multiply):
            return a * b
        if isinstance(op, cst.FloorDivide) and b:
            return a // b
    return None


def scale_to(
    code: str, params: int, budget: int, input_shape: tuple[int, ...], num_classes: int
) -> tuple[str, str]:
    """``code`` (measured at ``params`` parameters) compound-scaled by the largest phi on a grid of
    PHI_STEP whose estimate stays within ``budget``: (new code, what changed). Raises MutationError when
    no phi changes the code (within the budget), or no layer's size can be read from the code."""
    base = estimate_params(code, input_shape, num_classes)
    if not base:
        raise MutationError("no layer whose parameters can be read from the code: cannot scale it")

    def fits(k: int) -> bool:
        scaled = compound(code, k * PHI_STEP)[0]
        return params * estimate_params(scaled, input_shape, num_classes) / base <= budget

    if params >= budget:
        raise MutationError(f"already at {params:,} parameters, no room under {budget:,}")
    if compound(code, PHI_MAX)[0] == code:
        raise MutationError("no hidden layer to widen or repeat: nothing to scale")
    lo, hi = 0, round(PHI_MAX / PHI_STEP)  # fits(lo); the estimate grows with phi
    if fits(hi):
        lo = hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    new, what = compound(code, lo * PHI_STEP)
    if new == code:
        raise MutationError(f"no room to scale up under {budget:,} parameters")
    estimate = round(params * estimate_params(new, input_shape, num_classes) / base)
    return new, f"{what}; about {estimate:,} parameters (budget {budget:,})"
