"""Code mutations of parent candidates, made on source text with libcst: nothing here runs candidate code.

A mutation finds its sites in arbitrary PyTorch code: layers inside ``nn.Sequential(...)`` calls and list
literals, and standalone layer calls such as ``self.conv1 = nn.Conv2d(...)``. A standalone layer is changed
where it is built -- into ``nn.Sequential(layer, ...)``, ``Residual(layer)`` or ``nn.Identity()`` -- so that
``forward`` needs no edit. Sequential-style CNNs and MLPs stay shape-consistent; for exotic code the
sandbox's shape check is the judge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import libcst as cst
import numpy as np

MUTATIONS: tuple[str, ...] = ("width", "kernel", "depth", "residual", "norm", "activation", "dropout")


class MutationError(ValueError):
    """The mutation does not apply to this code: it has no site for it."""


_DROPOUTS = frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"})
_F_DROPOUTS = frozenset({"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"})
_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")
_DECONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups")
# Positional parameters of the torch.nn layers whose arguments mutations read or write.
_PARAMS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features"),
    "LazyLinear": ("out_features",),
    "GroupNorm": ("num_groups", "num_channels"),
    "LayerNorm": ("normalized_shape",),
    **dict.fromkeys(_DROPOUTS, ("p",)),
    **{
        f"{kind}{d}d": params
        for d in (1, 2, 3)
        for kind, params in (
            ("Conv", _CONV),
            ("LazyConv", _CONV[1:]),
            ("ConvTranspose", _DECONV),
            ("BatchNorm", ("num_features",)),
            ("InstanceNorm", ("num_features",)),
        )
    },
}
_SIZED = frozenset(n for n in _PARAMS if "Conv" in n or "Linear" in n)
_CONVS = frozenset(f"{lazy}Conv{d}d" for lazy in ("", "Lazy") for d in (1, 2, 3))
_NORMS = frozenset(n for n in _PARAMS if "Norm" in n)
_ACTS = {"ReLU": "relu", "GELU": "gelu", "SiLU": "silu", "LeakyReLU": "leaky_relu"}
_ACT_CLASS = {fn: cls for cls, fn in _ACTS.items()}
_POINTWISE = (
    _NORMS
    | _DROPOUTS
    | set(_ACTS)
    | {
        "ReLU6",
        "ELU",
        "SELU",
        "CELU",
        "Mish",
        "Hardswish",
        "Sigmoid",
        "Tanh",
        "PReLU",
        "Softplus",
        "Identity",
    }
)
# torch.nn layers whose integer arguments are never channel counts.
_NO_CHANNELS = (
    (_POINTWISE - _NORMS - {"PReLU"})
    | {"Sequential", "ModuleList", "ModuleDict", "Flatten", "Unflatten", "Softmax", "LogSoftmax", "Upsample"}
    | {
        f"{pool}{d}d"
        for pool in ("MaxPool", "AvgPool", "AdaptiveMaxPool", "AdaptiveAvgPool")
        for d in (1, 2, 3)
    }
)
# Keywords of calls to the module's own blocks that are not widths.
_NOT_WIDTH = frozenset(
    {"stride", "kernel_size", "kernel", "padding", "dilation", "groups", "depth", "num_layers"}
)
_FACTORS = (0.5, 0.75, 1.5, 2.0)
_KERNELS = (1, 3, 5, 7)
_DROPOUT_P = (0.1, 0.2, 0.3, 0.5)
_DEFAULT_ALIASES = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional"}
_HELPER = '''class {name}({nn}.Module):
    """Residual connection: x + body(x)."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)
'''

Edit = Callable[[cst.CSTNode], cst.CSTNode]


def mutate(code: str, kind: str, rng: np.random.Generator) -> tuple[str, str]:
    """Apply one ``kind`` mutation at a site chosen by ``rng``: (new code, one-line description).

    Raises MutationError when the code has no site for ``kind`` (or does not parse).
    """
    if kind not in MUTATIONS:
        raise ValueError(f"unknown mutation {kind!r}; choose from {', '.join(MUTATIONS)}")
    ctx = _Ctx(code)
    groups = [sites for sites in _SITES[kind](ctx).values() if sites]
    if not groups:
        raise MutationError(f"no site for a {kind} mutation in this code")
    change = _choice(rng, _choice(rng, groups))(rng)
    return ctx.render(change), change.description


def applicable(code: str) -> tuple[str, ...]:
    """The mutations that have at least one site in ``code`` (none when it does not parse)."""
    try:
        ctx = _Ctx(code)
    except MutationError:
        return ()
    return tuple(kind for kind in MUTATIONS if any(_SITES[kind](ctx).values()))


@dataclass(eq=False)
class _Seq:
    """Layers applied one after another: the arguments of ``nn.Sequential(...)`` or a list's elements."""

    node: cst.Call | cst.List

    @property
    def items(self) -> Sequence[cst.Arg | cst.BaseElement]:
        return self.node.args if isinstance(self.node, cst.Call) else self.node.elements


@dataclass(eq=False)
class _Layer:
    """A call that builds a torch.nn layer, and where it sits in a sequence (if it does)."""

    call: cst.Call
    name: str
    seq: _Seq | None = None
    index: int = 0


@dataclass
class _Change:
    """One mutation ready to render: edits keyed by original node, applied to the updated node."""

    description: str
    edits: dict[cst.CSTNode, Edit]
    helper: bool = False


Site = Callable[[np.random.Generator], _Change]


class _Collector(cst.CSTVisitor):
    """One pass in source order: parents, calls, lists, imports, names and references."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[cst.CSTNode] = []
        self.parent: dict[cst.CSTNode, cst.CSTNode] = {}
        self.calls: list[cst.Call] = []
        self.lists: list[cst.List] = []
        self.imports: list[cst.Import | cst.ImportFrom] = []
        self.refs: list[cst.Name | cst.Attribute] = []
        self.names: set[str] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.stack:
            self.parent[node] = self.stack[-1]
        self.stack.append(node)
        if isinstance(node, cst.Call):
            self.calls.append(node)
        elif isinstance(node, cst.List):
            self.lists.append(node)
        elif isinstance(node, (cst.Import, cst.ImportFrom)):
            self.imports.append(node)
        elif isinstance(node, (cst.Name, cst.Attribute)):
            self.refs.append(node)
            if isinstance(node, cst.Name):
                self.names.add(node.value)
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.stack.pop()


class _Replace(cst.CSTTransformer):
    """Apply edits to the nodes they are keyed by (inner edits are applied first)."""

    def __init__(self, edits: dict[cst.CSTNode, Edit]) -> None:
        super().__init__()
        self.edits = edits

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:
        edit = self.edits.get(original_node)
        return updated_node if edit is None else edit(updated_node)


class _Ctx:
    """A parsed candidate: its torch.nn layers and sequences, and how new code names ``torch.nn``."""

    def __init__(self, code: str) -> None:
        try:
            self.module = cst.parse_module(code)
        except cst.ParserSyntaxError as exc:
            raise MutationError(f"cannot parse the code: {exc.message}") from None
        seen = _Collector()
        self.module.visit(seen)
        self.parent = seen.parent
        self.aliases = _DEFAULT_ALIASES | _aliases(seen.imports)
        top = _aliases(i for i in seen.imports if self.parent[self.parent[i]] is self.module)
        nn_names = sorted(name for name, target in top.items() if target == "torch.nn")
        self.nn_missing = not nn_names and top.get("torch") != "torch"
        self.nn = "nn" if "nn" in nn_names or self.nn_missing else nn_names[0] if nn_names else "torch.nn"
        self.used_nn = False
        self._find_layers(seen)
        self._find_activations(seen)
        self._find_helper(seen)

    def _find_layers(self, seen: _Collector) -> None:
        """torch.nn layer calls and their sequences, functional calls, flatten views, calls of local blocks."""
        self.layers: list[_Layer] = []
        self.fcalls: list[tuple[cst.Call, str]] = []
        self.views: list[cst.BaseExpression] = []
        self.local_calls: list[cst.Call] = []
        local = {s.name.value for s in self.module.body if isinstance(s, (cst.ClassDef, cst.FunctionDef))}
        for call in seen.calls:
            name = self.resolve(call.func) or ""
            if name.startswith("torch.nn.functional."):
                self.fcalls.append((call, name.rpartition(".")[2]))
            elif name.startswith("torch.nn.") and name[9:].isidentifier() and name[9:10].isupper():
                self.layers.append(_Layer(call, name[9:]))
            elif isinstance(call.func, cst.Name) and call.func.value in local:
                self.local_calls.append(call)
            if isinstance(call.func, cst.Attribute) and call.func.attr.value in ("view", "reshape"):
                shape = _shape(call.args[1:] if name == "torch.reshape" else call.args)
                if len(shape) == 2:
                    self.views.append(shape[1])
        self.by_call = {layer.call: layer for layer in self.layers}
        for node in [layer.call for layer in self.layers if layer.name == "Sequential"] + seen.lists:
            seq = _Seq(node)
            for i, item in enumerate(seq.items):
                if (layer := self.by_call.get(item.value)) is not None:
                    layer.seq, layer.index = seq, i
        self.sized = [layer for layer in self.layers if layer.name in _SIZED]
        named = {layer for layer in self.sized if "class" in self.code(self.out(layer)).lower()}
        self.classifiers = [layer for layer in self.sized if layer in named or layer is self.sized[-1]]

    def _find_activations(self, seen: _Collector) -> None:
        """References to activation classes and functions: (node, function name, is a class)."""
        self.acts: list[tuple[cst.Name | cst.Attribute, str, bool]] = []
        for node in seen.refs:
            if isinstance(node, cst.Name) and not self._free(node):
                continue
            name = self.resolve(node) or ""
            if name.startswith("torch.nn.functional.") and name[20:] in _ACT_CLASS:
                self.acts.append((node, name[20:], False))
            elif name.startswith("torch.nn.") and name[9:] in _ACTS:
                self.acts.append((node, _ACTS[name[9:]], True))

    def _find_helper(self, seen: _Collector) -> None:
        """Name of our residual helper class: the one already in the module, or a free name."""
        for stmt in self.module.body:
            if isinstance(stmt, cst.ClassDef) and stmt.name.value.startswith("Residual"):
                ours = cst.parse_statement(_HELPER.format(name=stmt.name.value, nn=self.nn))
                if stmt.with_changes(leading_lines=()).deep_equals(ours):
                    self.helper, self.has_helper = stmt.name.value, True
                    return
        self.helper, self.has_helper = "Residual", False
        n = 1
        while self.helper in seen.names:
            n += 1
            self.helper = f"Residual{n}"

    def _free(self, node: cst.Name) -> bool:
        """Whether a name is a reference (not an attribute, keyword, parameter or definition)."""
        parent = self.parent[node]
        if isinstance(parent, cst.Attribute):
            return parent.attr is not node
        if isinstance(parent, cst.Arg):
            return parent.keyword is not node
        return not isinstance(parent, (cst.ImportAlias, cst.AsName, cst.Param, cst.FunctionDef, cst.ClassDef))

    def resolve(self, expr: cst.BaseExpression) -> str | None:
        dotted = _dotted(expr)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        target = self.aliases.get(head)
        return None if target is None else f"{target}.{rest}" if rest else target

    def code(self, node: cst.CSTNode | None) -> str:
        return "" if node is None else self.module.code_for_node(node)

    def expr(self, text: str) -> cst.BaseExpression:
        self.used_nn = True
        return cst.parse_expression(text)

    def value(self, layer: _Layer, param: str) -> cst.BaseExpression | None:
        params = _PARAMS.get(layer.name, ())
        arg = _arg(layer.call, params, param) if param in params else None
        return None if arg is None else arg.value

    def out(self, layer: _Layer) -> cst.BaseExpression | None:
        return self.value(layer, "out_features" if "Linear" in layer.name else "out_channels")

    def inn(self, layer: _Layer) -> cst.BaseExpression | None:
        return self.value(layer, "in_features" if "Linear" in layer.name else "in_channels")

    def item_layer(self, seq: _Seq, index: int) -> _Layer | None:
        return self.by_call.get(seq.items[index].value) if 0 <= index < len(seq.items) else None

    def block_end(self, layer: _Layer) -> int:
        """Index after ``layer`` and the norms, activations and dropouts that follow it in its sequence."""
        assert layer.seq is not None
        end = layer.index + 1
        while (nxt := self.item_layer(layer.seq, end)) is not None and nxt.name in _POINTWISE:
            end += 1
        return end

    def in_residual(self, node: cst.CSTNode) -> bool:
        """Whether ``node`` is an argument of a call to something named like a residual wrapper."""
        arg = self.parent.get(node)
        call = self.parent.get(arg) if arg is not None else None
        return (
            isinstance(arg, cst.Arg)
            and isinstance(call, cst.Call)
            and "resid" in self.code(call.func).lower()
        )

    def splice(self, seq: _Seq, start: int, stop: int, texts: Sequence[str]) -> dict[cst.CSTNode, Edit]:
        """Replace items ``start:stop`` of a sequence by new layers written as code."""
        make = cst.Arg if isinstance(seq.node, cst.Call) else cst.Element
        new = [make(value=self.expr(text)) for text in texts]
        key = "args" if isinstance(seq.node, cst.Call) else "elements"
        return {seq.node: lambda u: u.with_changes(**{key: _splice(getattr(u, key), start, stop, new)})}

    def replace(self, layer: _Layer, template: str) -> dict[cst.CSTNode, Edit]:
        """Replace a standalone layer call by ``template`` with ``{}`` standing for the call."""
        return {layer.call: lambda u: self.expr(template.replace("{}", self.code(u)))}

    def render(self, change: _Change) -> str:
        module = self.module.visit(_Replace(change.edits))
        if change.helper and not self.has_helper:
            helper = cst.parse_statement(_HELPER.format(name=self.helper, nn=self.nn))
            module = _after_imports(module, helper.with_changes(leading_lines=[cst.EmptyLine()] * 2))
        if (self.used_nn or change.helper) and self.nn_missing:
            module = _after_imports(module, cst.parse_statement("import torch.nn as nn\n"))
        return module.code


def _aliases(imports: Iterable[cst.Import | cst.ImportFrom]) -> dict[str, str]:
    """Local name -> dotted module path bound by these import statements."""
    out: dict[str, str] = {}
    for node in imports:
        if isinstance(node, cst.Import):
            for alias in node.names:
                name = _dotted(alias.name) or ""
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    out[alias.asname.name.value] = name
                else:
                    out[name.partition(".")[0]] = name.partition(".")[0]
        elif node.module is not None and not node.relative and not isinstance(node.names, cst.ImportStar):
            module = _dotted(node.module)
            for alias in node.names:
                name = _dotted(alias.name) or ""
                local = alias.asname.name if alias.asname is not None else None
                out[local.value if isinstance(local, cst.Name) else name] = f"{module}.{name}"
    return out


def _dotted(expr: cst.BaseExpression) -> str | None:
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        base = _dotted(expr.value)
        return None if base is None else f"{base}.{expr.attr.value}"
    return None


def _arg(call: cst.Call, params: Sequence[str], param: str) -> cst.Arg | None:
    """The argument bound to ``param``, by keyword or by position."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == param:
            return arg
    positional = []
    for arg in call.args:
        if arg.keyword is not None or arg.star:
            break
        positional.append(arg)
    index = list(params).index(param)
    return positional[index] if index < len(positional) else None


def _shape(args: Sequence[cst.Arg]) -> list[cst.BaseExpression]:
    """The size expressions of a view/reshape call: its positional arguments, or one tuple's elements."""
    values = [a.value for a in args if a.keyword is None and not a.star]
    if len(values) == 1 and isinstance(values[0], (cst.Tuple, cst.List)):
        return [e.value for e in values[0].elements]
    return values


def _int(node: cst.CSTNode | None) -> int | None:
    return node.evaluated_value if isinstance(node, cst.Integer) else None


def _num(node: cst.CSTNode | None) -> float | None:
    return float(node.evaluated_value) if isinstance(node, (cst.Integer, cst.Float)) else None


def _same_ints(node: cst.CSTNode | None) -> int | None:
    """An integer literal, or the value of a tuple/list of equal integer literals like ``(3, 3)``."""
    if isinstance(node, (cst.Tuple, cst.List)):
        values = {_int(e.value) for e in node.elements}
        return values.pop() if len(values) == 1 else None
    return _int(node)


def _set_ints(node: cst.CSTNode, value: int) -> cst.CSTNode:
    if isinstance(node, (cst.Tuple, cst.List)):
        return node.with_changes(
            elements=[e.with_changes(value=_set_ints(e.value, value)) for e in node.elements]
        )
    return node.with_changes(value=str(value))


def _dims(name: str) -> int:
    """Spatial dimensions of a layer: 2 for Conv2d, 0 for Linear."""
    return int(name[-2]) if name[-1] == "d" and name[-2].isdigit() else 0


def _factor(expr: cst.BaseExpression | None, value: int) -> cst.Integer | None:
    """In a product like ``32 * 7 * 7`` (or ``7 * 7 * 32``), the outer factor equal to ``value``."""
    factors: list[cst.BaseExpression] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.Multiply):
            stack += [node.right, node.left]
        elif node is not None:
            factors.append(node)
    if len(factors) < 2:
        return None
    return next((f for f in (factors[0], factors[-1]) if _int(f) == value), None)


def _choice(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _kwarg(name: str, value: cst.BaseExpression) -> cst.Arg:
    bare = cst.SimpleWhitespace("")
    return cst.Arg(value=value, keyword=cst.Name(name), equal=cst.AssignEqual(bare, bare))


def _splice(items: Sequence, start: int, stop: int, new: Sequence) -> tuple:
    """Replace ``items[start:stop]`` by ``new``, keeping the commas' formatting consistent."""
    if not items:
        return tuple(new)
    last = items[-1]
    sep = next(
        (_bare_comma(it.comma) for it in items[:-1] if isinstance(it.comma, cst.Comma)),
        cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")),
    )
    out = [*items[:start], *new, *items[stop:]]
    return tuple(
        it.with_changes(comma=last.comma)
        if k == len(out) - 1
        else it.with_changes(comma=sep)
        if it is last or not isinstance(it.comma, cst.Comma)
        else it
        for k, it in enumerate(out)
    )


def _bare_comma(comma: cst.Comma) -> cst.Comma:
    """A separator like ``comma`` without its trailing comment."""
    ws = comma.whitespace_after
    if isinstance(ws, cst.ParenthesizedWhitespace):
        return comma.with_changes(
            whitespace_after=ws.with_changes(first_line=cst.TrailingWhitespace(), empty_lines=())
        )
    return comma


def _after_imports(module: cst.Module, stmt: cst.BaseStatement) -> cst.Module:
    """Insert a statement after the last top-level import (or after the docstring)."""
    body = list(module.body)
    at = 1 if module.get_docstring() is not None else 0
    for i, s in enumerate(body):
        if isinstance(s, cst.SimpleStatementLine) and any(
            isinstance(x, (cst.Import, cst.ImportFrom)) for x in s.body
        ):
            at = i + 1
    body.insert(at, stmt)
    return module.with_changes(body=body)


def _preserving(ctx: _Ctx, layer: _Layer) -> bool:
    """A Linear or Conv layer whose output has its input's shape: in == out, stride 1, same padding."""
    inn, out = ctx.inn(layer), ctx.out(layer)
    if inn is None or out is None or ctx.code(inn) != ctx.code(out):
        return False
    if layer.name == "Linear":
        return True
    if layer.name not in _CONVS:
        return False
    stride, pad, dil = ctx.value(layer, "stride"), ctx.value(layer, "padding"), ctx.value(layer, "dilation")
    if stride is not None and _same_ints(stride) != 1:
        return False
    if isinstance(pad, cst.SimpleString):
        return pad.evaluated_value == "same"
    k = _same_ints(ctx.value(layer, "kernel_size"))
    d = 1 if dil is None else _same_ints(dil)
    p = 0 if pad is None else _same_ints(pad)
    return k is not None and d is not None and p == d * (k - 1) // 2


# width ---------------------------------------------------------------------------------------------------


def _width_sites(ctx: _Ctx) -> dict[str, list[Site]]:
    final = {_int(ctx.out(layer)) for layer in ctx.classifiers}
    tied = _int(ctx.inn(ctx.sized[0])) if ctx.sized else None
    words: dict[int, str] = {}
    for layer in ctx.sized:
        v = _int(ctx.out(layer))
        if v and layer not in ctx.classifiers and v not in final and v != tied:
            words.setdefault(v, "channels" if _dims(layer.name) else "features")
    sites: list[Site] = []
    for v in sorted(words):
        plan = _width_plan(ctx, v)
        if plan is not None:
            nodes, step = plan
            news = sorted({max(step, math.floor(v * f / step + 0.5) * step) for f in _FACTORS} - {v})
            sites.append(partial(_width_apply, v, words[v], nodes, news))
    return {"width": sites}


def _width_plan(ctx: _Ctx, v: int) -> tuple[list[cst.Integer], int] | None:
    """The literals that scale with width ``v`` and the multiple new widths keep, or None when unsafe."""
    nodes: list[cst.Integer] = []
    step = 4
    for layer in ctx.layers:
        if layer.name in _SIZED:
            out, inn = ctx.out(layer), ctx.inn(layer)
            hits = [out if _int(out) == v else None, inn if _int(inn) == v else _factor(inn, v)]
            groups = ctx.value(layer, "groups")
        elif layer.name in _NORMS:
            size = ctx.value(layer, _PARAMS[layer.name][-1])
            if isinstance(size, (cst.Tuple, cst.List)) and size.elements:
                size = size.elements[0].value
            hits = [size if _int(size) == v else None]
            groups = ctx.value(layer, "num_groups") if layer.name == "GroupNorm" else None
        elif layer.name not in _NO_CHANNELS and any(_int(a.value) == v for a in layer.call.args):
            return None
        else:
            continue
        hits = [h for h in hits if h is not None]
        nodes += hits
        if hits and groups is not None:
            g = _int(groups)
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
            if _int(a.value) == v and (a.keyword is None or a.keyword.value not in _NOT_WIDTH)
        ]
    outs = {_int(ctx.out(layer)) for layer in ctx.sized}
    flat = set()
    for prev, layer in zip(ctx.sized, ctx.sized[1:], strict=False):
        inn = ctx.inn(layer)
        size = _int(inn)
        if (
            layer.name == "Linear"
            and size
            and size != v
            and size % v == 0
            and size not in outs
            and _dims(prev.name)
            and _int(ctx.out(prev)) == v
        ):
            nodes.append(inn)
            flat.add(size)
    for expr in ctx.views:
        hit = expr if _int(expr) == v or _int(expr) in flat else _factor(expr, v)
        if hit is not None:
            nodes.append(hit)
    return nodes, step


def _width_apply(
    v: int, word: str, nodes: list[cst.Integer], news: list[int], rng: np.random.Generator
) -> _Change:
    new = _choice(rng, news)
    edits: dict[cst.CSTNode, Edit] = {
        n: lambda u: u.with_changes(value=str(u.evaluated_value // v * new)) for n in nodes
    }
    return _Change(f"width: {v} -> {new} {word}", edits)


# kernel --------------------------------------------------------------------------------------------------


def _kernel_sites(ctx: _Ctx) -> dict[str, list[Site]]:
    sites: list[Site] = []
    for layer in ctx.layers:
        k = _same_ints(ctx.value(layer, "kernel_size")) if layer.name in _CONVS else None
        if k:
            sites.append(partial(_kernel_apply, ctx, layer, k))
    return {"kernel": sites}


def _kernel_apply(ctx: _Ctx, layer: _Layer, k: int, rng: np.random.Generator) -> _Change:
    new = _choice(rng, [n for n in _KERNELS if n != k])
    edits: dict[cst.CSTNode, Edit] = {ctx.value(layer, "kernel_size"): partial(_set_ints, value=new)}
    pad, dil = ctx.value(layer, "padding"), ctx.value(layer, "dilation")
    d = 1 if dil is None else _same_ints(dil)
    if d is not None:
        same = d * (new - 1) // 2
        if pad is None and k == 1:
            edits[layer.call] = lambda u: u.with_changes(
                args=_splice(u.args, len(u.args), len(u.args), [_kwarg("padding", cst.Integer(str(same)))])
            )
        elif pad is not None and _same_ints(pad) == d * (k - 1) // 2:
            edits[pad] = partial(_set_ints, value=same)
        elif (
            isinstance(pad, cst.BinaryOperation)
            and isinstance(pad.operator, cst.FloorDivide)
            and _int(pad.left) == k
            and _int(pad.right) == 2
        ):
            edits[pad.left] = partial(_set_ints, value=new)
    return _Change(f"kernel: {k} -> {new} ({layer.name})", edits)


# depth ---------------------------------------------------------------------------------------------------


def _depth_sites(ctx: _Ctx) -> dict[str, list[Site]]:
    add: list[Site] = []
    remove: list[Site] = []
    for layer in ctx.sized:
        out = ctx.out(layer)
        if layer in ctx.classifiers or out is None:
            continue
        add.append(partial(_depth_add, ctx, layer, out))
        if _preserving(ctx, layer) and (
            layer.seq is None or ctx.block_end(layer) - layer.index < len(layer.seq.items)
        ):
            remove.append(partial(_depth_remove, ctx, layer))
    return {"add": add, "remove": remove}


def _depth_add(ctx: _Ctx, layer: _Layer, out: cst.BaseExpression, rng: np.random.Generator) -> _Change:
    c, d = ctx.code(out), _dims(layer.name)
    new = f"Conv{d}d({c}, {c}, 3, padding=1)" if d else f"Linear({c}, {c})"
    what = f"depth: add {new} after {layer.name}"
    new = f"{ctx.nn}.{new}"
    if layer.seq is None:
        return _Change(what, ctx.replace(layer, f"{ctx.nn}.Sequential({{}}, {ctx.nn}.ReLU(), {new})"))
    stop = ctx.block_end(layer)
    tail = [ctx.code(item.value) for item in layer.seq.items[layer.index + 1 : stop]] or [f"{ctx.nn}.ReLU()"]
    return _Change(what, ctx.splice(layer.seq, stop, stop, [new, *tail]))


def _depth_remove(ctx: _Ctx, layer: _Layer, rng: np.random.Generator) -> _Change:
    what = f"depth: remove {layer.name}({ctx.code(ctx.inn(layer))}, {ctx.code(ctx.out(layer))})"
    if layer.seq is None:
        return _Change(what, ctx.replace(layer, f"{ctx.nn}.Identity()"))
    return _Change(what, ctx.splice(layer.seq, layer.index, ctx.block_end(layer), []))


# residual ------------------------------------------------------------------------------------------------


def _residual_sites(ctx: _Ctx) -> dict[str, list[Site]]:
    sites: list[Site] = []
    for layer in ctx.sized:
        if not _preserving(ctx, layer):
            continue
        if layer.seq is None:
            if not ctx.in_residual(layer.call):
                sites.append(partial(_residual_one, ctx, layer))
            continue
        width = ctx.code(ctx.out(layer))
        ends = [ctx.block_end(layer)]
        while (
            (nxt := ctx.item_layer(layer.seq, ends[-1])) is not None
            and _preserving(ctx, nxt)
            and ctx.code(ctx.out(nxt)) == width
        ):
            ends.append(ctx.block_end(nxt))
        if layer.index == 0 and ctx.in_residual(layer.seq.node):
            ends = [end for end in ends if end < len(layer.seq.items)]
        if ends:
            sites.append(partial(_residual_run, ctx, layer, ends))
    return {"residual": sites}


def _residual_one(ctx: _Ctx, layer: _Layer, rng: np.random.Generator) -> _Change:
    return _Change(
        f"residual: wrap {layer.name} in {ctx.helper}", ctx.replace(layer, f"{ctx.helper}({{}})"), True
    )


def _residual_run(ctx: _Ctx, layer: _Layer, ends: list[int], rng: np.random.Generator) -> _Change:
    assert layer.seq is not None
    stop = _choice(rng, ends)
    body = ", ".join(ctx.code(item.value) for item in layer.seq.items[layer.index : stop])
    what = f"residual: wrap {stop - layer.index} layers from {layer.name} in {ctx.helper}"
    edits = ctx.splice(layer.seq, layer.index, stop, [f"{ctx.helper}({ctx.nn}.Sequential({body}))"])
    return _Change(what, edits, True)


# norm ----------------------------------------------------------------------------------------------------


def _norm_sites(ctx: _Ctx) -> dict[str, list[Site]]:
    insert: list[Site] = []
    remove: list[Site] = []
    has_norm = any(layer.name in _NORMS for layer in ctx.layers)
    for layer in ctx.sized:
        out = ctx.out(layer)
        if layer in ctx.classifiers or out is None or (layer.seq is None and has_norm):
            continue
        nxt = ctx.item_layer(layer.seq, layer.index + 1) if layer.seq is not None else None
        if nxt is None or nxt.name not in _NORMS:
            insert.append(partial(_norm_insert, ctx, layer, out))
    for layer in ctx.layers:
        if layer.name in _NORMS and (layer.seq is None or len(layer.seq.items) > 1):
            remove.append(partial(_norm_remove, ctx, layer))
    return {"insert": insert, "remove": remove}


def _norm_insert(ctx: _Ctx, layer: _Layer, out: cst.BaseExpression, rng: np.random.Generator) -> _Change:
    norm = f"BatchNorm{max(_dims(layer.name), 1)}d({ctx.code(out)})"
    what = f"norm: insert {norm} after {layer.name}"
    norm = f"{ctx.nn}.{norm}"
    if layer.seq is None:
        return _Change(what, ctx.replace(layer, f"{ctx.nn}.Sequential({{}}, {norm})"))
    return _Change(what, ctx.splice(layer.seq, layer.index + 1, layer.index + 1, [norm]))


def _norm_remove(ctx: _Ctx, layer: _Layer, rng: np.random.Generator) -> _Change:
    what = f"norm: remove {layer.name}"
    if layer.seq is None:
        return _Change(what, ctx.replace(layer, f"{ctx.nn}.Identity()"))
    return _Change(what, ctx.splice(layer.seq, layer.index, layer.index + 1, []))


# activation ----------------------------------------------------------------------------------------------


def _activation_sites(ctx: _Ctx) -> dict[str, list[Site]]:
    present = [fn for fn in _ACT_CLASS if any(fam == fn for _, fam, _ in ctx.acts)]
    return {"activation": [partial(_activation_apply, ctx, fn) for fn in present]}


def _activation_apply(ctx: _Ctx, src: str, rng: np.random.Generator) -> _Change:
    dst = _choice(rng, [fn for fn in _ACT_CLASS if fn != src])
    edits: dict[cst.CSTNode, Edit] = {}
    refs = [(node, is_module) for node, fam, is_module in ctx.acts if fam == src]
    for node, is_module in refs:
        new = _ACT_CLASS[dst] if is_module else dst
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
    return _Change(f"activation: {_ACT_CLASS[src]} -> {_ACT_CLASS[dst]} ({sites})", edits)


# dropout -------------------------------------------------------------------------------------------------


def _dropout_sites(ctx: _Ctx) -> dict[str, list[Site]]:
    change: list[Site] = []
    insert: list[Site] = []
    present = [(layer.call, ctx.value(layer, "p")) for layer in ctx.layers if layer.name in _DROPOUTS]
    for call, fn in ctx.fcalls:
        if fn in _F_DROPOUTS:
            arg = _arg(call, ("input", "p"), "p")
            present.append((call, None if arg is None else arg.value))
    for call, p in present:
        if p is None or _num(p) is not None:
            change.append(partial(_dropout_change, call, p))
    for layer in ctx.classifiers:
        if "Linear" not in layer.name:
            continue
        if layer.seq is not None:
            prev = ctx.item_layer(layer.seq, layer.index - 1)
            if prev is None or prev.name not in _DROPOUTS:
                insert.append(partial(_dropout_insert, ctx, layer))
        elif not present:
            insert.append(partial(_dropout_insert, ctx, layer))
    return {"change": change, "insert": insert}


def _dropout_change(call: cst.Call, p: cst.BaseExpression | None, rng: np.random.Generator) -> _Change:
    old = 0.5 if p is None else _num(p)
    new = _choice(rng, [q for q in _DROPOUT_P if not math.isclose(q, old)])
    if p is None:
        edits: dict[cst.CSTNode, Edit] = {
            call: lambda u: u.with_changes(
                args=_splice(u.args, len(u.args), len(u.args), [_kwarg("p", cst.Float(repr(new)))])
            )
        }
    else:
        edits = {p: lambda u: cst.Float(repr(new))}
    return _Change(f"dropout: p {old:g} -> {new:g}", edits)


def _dropout_insert(ctx: _Ctx, layer: _Layer, rng: np.random.Generator) -> _Change:
    drop = f"{ctx.nn}.Dropout({_choice(rng, _DROPOUT_P)})"
    what = f"dropout: insert {drop.removeprefix(ctx.nn + '.')} before the final {layer.name}"
    if layer.seq is None:
        return _Change(what, ctx.replace(layer, f"{ctx.nn}.Sequential({drop}, {{}})"))
    return _Change(what, ctx.splice(layer.seq, layer.index, layer.index, [drop]))


_SITES: dict[str, Callable[[_Ctx], dict[str, list[Site]]]] = {
    "width": _width_sites,
    "kernel": _kernel_sites,
    "depth": _depth_sites,
    "residual": _residual_sites,
    "norm": _norm_sites,
    "activation": _activation_sites,
    "dropout": _dropout_sites,
}
