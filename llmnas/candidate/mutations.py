"""The mutation kinds: where each one applies in a parsed candidate and the edit it makes there.

Each ``*_sites`` function returns groups of sites; a site, given an rng, makes one `Change`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import libcst as cst
import numpy as np

from llmnas.candidate.cst_edits import (
    Edit,
    bound_arg,
    factor,
    int_value,
    kwarg,
    num_value,
    same_ints,
    set_ints,
    splice_items,
)
from llmnas.candidate.layers import (
    ACT_CLASS,
    CONVS,
    DROPOUTS,
    F_DROPOUTS,
    NO_CHANNELS,
    NORMS,
    PARAMS,
    SIZED,
    Change,
    Layer,
    Parsed,
    Site,
    dims,
    preserving,
)

# Keywords of calls to the module's own blocks that are not widths.
_NOT_WIDTH = frozenset(
    {"stride", "kernel_size", "kernel", "padding", "dilation", "groups", "depth", "num_layers"}
)
_FACTORS = (0.5, 0.75, 1.5, 2.0)
_KERNELS = (1, 3, 5, 7)
_DROPOUT_P = (0.1, 0.2, 0.3, 0.5)


def choice(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


# width ---------------------------------------------------------------------------------------------------


def _width_sites(ctx: Parsed) -> dict[str, list[Site]]:
    sites: list[Site] = []
    for v, (word, nodes, step) in width_plans(ctx).items():
        news = sorted({rounded(v * f, step) for f in _FACTORS} - {v})
        sites.append(partial(_width_apply, v, word, nodes, news))
    return {"width": sites}


def width_plans(ctx: Parsed) -> dict[int, tuple[str, list[cst.Integer], int]]:
    """Each hidden width that can change safely (not the classes, not the input's size), in increasing
    order: (its word, the literals that scale with it, the multiple its new values keep)."""
    final = {int_value(ctx.out(layer)) for layer in ctx.classifiers}
    tied = int_value(ctx.inn(ctx.sized[0])) if ctx.sized else None
    words: dict[int, str] = {}
    for layer in ctx.sized:
        v = int_value(ctx.out(layer))
        if v and layer not in ctx.classifiers and v not in final and v != tied:
            words.setdefault(v, "channels" if dims(layer.name) else "features")
    plans = {v: _width_plan(ctx, v) for v in sorted(words)}
    return {v: (words[v], *plan) for v, plan in plans.items() if plan is not None}


def rounded(width: float, step: int) -> int:
    """``width`` to the nearest multiple of ``step`` (at least ``step``)."""
    return max(step, math.floor(width / step + 0.5) * step)


def width_edits(nodes: list[cst.Integer], v: int, new: int) -> dict[cst.CSTNode, Edit]:
    """Edits that turn width ``v`` into ``new`` in every literal of its plan."""
    return {n: lambda u: u.with_changes(value=str(u.evaluated_value // v * new)) for n in nodes}


def _width_plan(ctx: Parsed, v: int) -> tuple[list[cst.Integer], int] | None:
    """The literals that scale with width ``v`` and the multiple new widths keep, or None when unsafe."""
    nodes: list[cst.Integer] = []
    step = 4
    for layer in ctx.layers:
        if layer.name in SIZED:
            out, inn = ctx.out(layer), ctx.inn(layer)
            hits = [out if int_value(out) == v else None, inn if int_value(inn) == v else factor(inn, v)]
            groups = ctx.value(layer, "groups")
        elif layer.name in NORMS:
            size = ctx.value(layer, PARAMS[layer.name][-1])
            if isinstance(size, (cst.Tuple, cst.List)) and size.elements:
                size = size.elements[0].value
            hits = [size if int_value(size) == v else None]
            groups = ctx.value(layer, "num_groups") if layer.name == "GroupNorm" else None
        elif layer.name not in NO_CHANNELS and any(int_value(a.value) == v for a in layer.call.args):
            return None
        else:
            continue
        hits = [h for h in hits if h is not None]
        nodes += hits
        if hits and groups is not None:
            g = int_value(groups)
            if g is None:
                return None
            if g == v:
                nodes.append(groups)
            else:
                step = math.lcm(step, g)
    for call in ctx.local_calls:
        nodes += [
            a.value
            for a in call.args
            if int_value(a.value) == v and (a.keyword is None or a.keyword.value not in _NOT_WIDTH)
        ]
    outs = {int_value(ctx.out(layer)) for layer in ctx.sized}
    flat = set()
    for prev, layer in zip(ctx.sized, ctx.sized[1:], strict=False):
        inn = ctx.inn(layer)
        size = int_value(inn)
        if (
            layer.name == "Linear"
            and size
            and size != v
            and size % v == 0
            and size not in outs
            and dims(prev.name)
            and int_value(ctx.out(prev)) == v
        ):
            nodes.append(inn)
            flat.add(size)
    for expr in ctx.views:
        hit = expr if int_value(expr) == v or int_value(expr) in flat else factor(expr, v)
        if hit is not None:
            nodes.append(hit)
    return nodes, step


def _width_apply(
    v: int, word: str, nodes: list[cst.Integer], news: list[int], rng: np.random.Generator
) -> Change:
    new = choice(rng, news)
    return Change(f"width: {v} -> {new} {word}", width_edits(nodes, v, new))


# kernel --------------------------------------------------------------------------------------------------


def _kernel_sites(ctx: Parsed) -> dict[str, list[Site]]:
    sites: list[Site] = []
    for layer in ctx.layers:
        k = same_ints(ctx.value(layer, "kernel_size")) if layer.name in CONVS else None
        if k:
            sites.append(partial(_kernel_apply, ctx, layer, k))
    return {"kernel": sites}


def _kernel_apply(ctx: Parsed, layer: Layer, k: int, rng: np.random.Generator) -> Change:
    new = choice(rng, [n for n in _KERNELS if n != k])
    edits: dict[cst.CSTNode, Edit] = {ctx.value(layer, "kernel_size"): partial(set_ints, value=new)}
    pad, dil = ctx.value(layer, "padding"), ctx.value(layer, "dilation")
    d = 1 if dil is None else same_ints(dil)
    if d is not None:
        same = d * (new - 1) // 2
        if pad is None and k == 1:
            edits[layer.call] = lambda u: u.with_changes(
                args=splice_items(
                    u.args, len(u.args), len(u.args), [kwarg("padding", cst.Integer(str(same)))]
                )
            )
        elif pad is not None and same_ints(pad) == d * (k - 1) // 2:
            edits[pad] = partial(set_ints, value=same)
        elif (
            isinstance(pad, cst.BinaryOperation)
            and isinstance(pad.operator, cst.FloorDivide)
            and int_value(pad.left) == k
            and int_value(pad.right) == 2
        ):
            edits[pad.left] = partial(set_ints, value=new)
    return Change(f"kernel: {k} -> {new} ({layer.name})", edits)


# depth ---------------------------------------------------------------------------------------------------


def _depth_sites(ctx: Parsed) -> dict[str, list[Site]]:
    add: list[Site] = []
    remove: list[Site] = []
    for layer in ctx.sized:
        out = ctx.out(layer)
        if layer in ctx.classifiers or out is None:
            continue
        add.append(partial(_depth_add, ctx, layer, out))
        if preserving(ctx, layer) and (
            layer.seq is None or ctx.block_end(layer) - layer.index < len(layer.seq.items)
        ):
            remove.append(partial(_depth_remove, ctx, layer))
    return {"add": add, "remove": remove}


def _depth_add(ctx: Parsed, layer: Layer, out: cst.BaseExpression, rng: np.random.Generator) -> Change:
    c, d = ctx.code(out), dims(layer.name)
    new = f"Conv{d}d({c}, {c}, 3, padding=1)" if d else f"Linear({c}, {c})"
    return Change(f"depth: add {new} after {layer.name}", ctx.deepen({layer: (new, 1)}))


def _depth_remove(ctx: Parsed, layer: Layer, rng: np.random.Generator) -> Change:
    what = f"depth: remove {layer.name}({ctx.code(ctx.inn(layer))}, {ctx.code(ctx.out(layer))})"
    if layer.seq is None:
        return Change(what, ctx.replace(layer, f"{ctx.nn}.Identity()"))
    return Change(what, ctx.splice(layer.seq, layer.index, ctx.block_end(layer), []))


# residual ------------------------------------------------------------------------------------------------


def _residual_sites(ctx: Parsed) -> dict[str, list[Site]]:
    sites: list[Site] = []
    for layer in ctx.sized:
        if not preserving(ctx, layer):
            continue
        if layer.seq is None:
            if not ctx.in_residual(layer.call):
                sites.append(partial(_residual_one, ctx, layer))
            continue
        width = ctx.code(ctx.out(layer))
        ends = [ctx.block_end(layer)]
        while (
            (nxt := ctx.item_layer(layer.seq, ends[-1])) is not None
            and preserving(ctx, nxt)
            and ctx.code(ctx.out(nxt)) == width
        ):
            ends.append(ctx.block_end(nxt))
        if layer.index == 0 and ctx.in_residual(layer.seq.node):
            ends = [end for end in ends if end < len(layer.seq.items)]
        if ends:
            sites.append(partial(_residual_run, ctx, layer, ends))
    return {"residual": sites}


def _residual_one(ctx: Parsed, layer: Layer, rng: np.random.Generator) -> Change:
    return Change(
        f"residual: wrap {layer.name} in {ctx.helper}", ctx.replace(layer, f"{ctx.helper}({{}})"), True
    )


def _residual_run(ctx: Parsed, layer: Layer, ends: list[int], rng: np.random.Generator) -> Change:
    assert layer.seq is not None
    stop = choice(rng, ends)
    body = ", ".join(ctx.code(item.value) for item in layer.seq.items[layer.index : stop])
    what = f"residual: wrap {stop - layer.index} layers from {layer.name} in {ctx.helper}"
    edits = ctx.splice(layer.seq, layer.index, stop, [f"{ctx.helper}({ctx.nn}.Sequential({body}))"])
    return Change(what, edits, True)


# norm ----------------------------------------------------------------------------------------------------


def _norm_sites(ctx: Parsed) -> dict[str, list[Site]]:
    insert: list[Site] = []
    remove: list[Site] = []
    has_norm = any(layer.name in NORMS for layer in ctx.layers)
    for layer in ctx.sized:
        out = ctx.out(layer)
        if layer in ctx.classifiers or out is None or (layer.seq is None and has_norm):
            continue
        nxt = ctx.item_layer(layer.seq, layer.index + 1) if layer.seq is not None else None
        if nxt is None or nxt.name not in NORMS:
            insert.append(partial(_norm_insert, ctx, layer, out))
    for layer in ctx.layers:
        if layer.name in NORMS and (layer.seq is None or len(layer.seq.items) > 1):
            remove.append(partial(_norm_remove, ctx, layer))
    return {"insert": insert, "remove": remove}


def _norm_insert(ctx: Parsed, layer: Layer, out: cst.BaseExpression, rng: np.random.Generator) -> Change:
    norm = f"BatchNorm{max(dims(layer.name), 1)}d({ctx.code(out)})"
    what = f"norm: insert {norm} after {layer.name}"
    norm = f"{ctx.nn}.{norm}"
    if layer.seq is None:
        return Change(what, ctx.replace(layer, f"{ctx.nn}.Sequential({{}}, {norm})"))
    return Change(what, ctx.splice(layer.seq, layer.index + 1, layer.index + 1, [norm]))


def _norm_remove(ctx: Parsed, layer: Layer, rng: np.random.Generator) -> Change:
    what = f"norm: remove {layer.name}"
    if layer.seq is None:
        return Change(what, ctx.replace(layer, f"{ctx.nn}.Identity()"))
    return Change(what, ctx.splice(layer.seq, layer.index, layer.index + 1, []))


# activation ----------------------------------------------------------------------------------------------


def _activation_sites(ctx: Parsed) -> dict[str, list[Site]]:
    present = [fn for fn in ACT_CLASS if any(fam == fn for _, fam, _ in ctx.acts)]
    return {"activation": [partial(_activation_apply, ctx, fn) for fn in present]}


def _activation_apply(ctx: Parsed, src: str, rng: np.random.Generator) -> Change:
    dst = choice(rng, [fn for fn in ACT_CLASS if fn != src])
    edits: dict[cst.CSTNode, Edit] = {}
    refs = [(node, is_module) for node, fam, is_module in ctx.acts if fam == src]
    for node, is_module in refs:
        new = ACT_CLASS[dst] if is_module else dst
        if isinstance(node, cst.Attribute):
            ref: Edit = partial(cst.Attribute.with_changes, attr=cst.Name(new))
        else:
            text = f"{ctx.nn}.{new}" if is_module else f"{ctx.nn}.functional.{new}"
            ref = partial(lambda _, t: ctx.expr(t), t=text)
        parent = ctx.parent[node]
        if isinstance(parent, cst.Call) and parent.func is node:
            # Arguments do not carry over (ReLU(inplace=True) -> GELU()); a function keeps its input.
            keep = 0 if is_module else 1
            edits[parent] = partial(
                lambda u, ref, keep: u.with_changes(
                    func=ref(u.func),
                    args=[a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in u.args[:keep]],
                ),
                ref=ref,
                keep=keep,
            )
        else:
            edits[node] = ref
    sites = f"{len(refs)} site{'s' if len(refs) > 1 else ''}"
    return Change(f"activation: {ACT_CLASS[src]} -> {ACT_CLASS[dst]} ({sites})", edits)


# dropout -------------------------------------------------------------------------------------------------


def _dropout_sites(ctx: Parsed) -> dict[str, list[Site]]:
    change: list[Site] = []
    insert: list[Site] = []
    present = [(layer.call, ctx.value(layer, "p")) for layer in ctx.layers if layer.name in DROPOUTS]
    for call, fn in ctx.fcalls:
        if fn in F_DROPOUTS:
            arg = bound_arg(call, ("input", "p"), "p")
            present.append((call, None if arg is None else arg.value))
    for call, p in present:
        if p is None or num_value(p) is not None:
            change.append(partial(_dropout_change, call, p))
    for layer in ctx.classifiers:
        if "Linear" not in layer.name:
            continue
        if layer.seq is not None:
            prev = ctx.item_layer(layer.seq, layer.index - 1)
            if prev is None or prev.name not in DROPOUTS:
                insert.append(partial(_dropout_insert, ctx, layer))
        elif not present:
            insert.append(partial(_dropout_insert, ctx, layer))
    return {"change": change, "insert": insert}


def _dropout_change(call: cst.Call, p: cst.BaseExpression | None, rng: np.random.Generator) -> Change:
    old = 0.5 if p is None else num_value(p)
    new = choice(rng, [q for q in _DROPOUT_P if not math.isclose(q, old)])
    if p is None:
        edits: dict[cst.CSTNode, Edit] = {
            call: lambda u: u.with_changes(
                args=splice_items(u.args, len(u.args), len(u.args), [kwarg("p", cst.Float(repr(new)))])
            )
        }
    else:
        edits = {p: lambda u: cst.Float(repr(new))}
    return Change(f"dropout: p {old:g} -> {new:g}", edits)


def _dropout_insert(ctx: Parsed, layer: Layer, rng: np.random.Generator) -> Change:
    drop = f"{ctx.nn}.Dropout({choice(rng, _DROPOUT_P)})"
    what = f"dropout: insert {drop.removeprefix(ctx.nn + '.')} before the final {layer.name}"
    if layer.seq is None:
        return Change(what, ctx.replace(layer, f"{ctx.nn}.Sequential({drop}, {{}})"))
    return Change(what, ctx.splice(layer.seq, layer.index, layer.index, [drop]))


SITES: dict[str, Callable[[Parsed], dict[str, list[Site]]]] = {
    "width": _width_sites,
    "kernel": _kernel_sites,
    "depth": _depth_sites,
    "residual": _residual_sites,
    "norm": _norm_sites,
    "activation": _activation_sites,
    "dropout": _dropout_sites,
}
