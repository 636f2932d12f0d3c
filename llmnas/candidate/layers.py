"""A parsed candidate as the mutations see it: its torch.nn layers, the sequences they sit in, the
activations it uses, and how new code should name ``torch.nn``. Reads code only; never runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import libcst as cst
import numpy as np

from llmnas.candidate.cst_edits import (
    Edit,
    after_imports,
    apply_edits,
    bound_arg,
    chain,
    same_ints,
    splice_items,
)
from llmnas.candidate.names import import_aliases, torch_name


class MutationError(ValueError):
    """The mutation does not apply to this code: it has no site for it."""


DROPOUTS = frozenset({"Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"})
F_DROPOUTS = frozenset({"dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout"})
_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")
_DECONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups")
# Positional parameters of the torch.nn layers whose arguments mutations read or write.
PARAMS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features"),
    "LazyLinear": ("out_features",),
    "GroupNorm": ("num_groups", "num_channels"),
    "LayerNorm": ("normalized_shape",),
    **dict.fromkeys(DROPOUTS, ("p",)),
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
SIZED = frozenset(n for n in PARAMS if "Conv" in n or "Linear" in n)
CONVS = frozenset(f"{lazy}Conv{d}d" for lazy in ("", "Lazy") for d in (1, 2, 3))
NORMS = frozenset(n for n in PARAMS if "Norm" in n)
ACTS = {"ReLU": "relu", "GELU": "gelu", "SiLU": "silu", "LeakyReLU": "leaky_relu"}
ACT_CLASS = {fn: cls for cls, fn in ACTS.items()}
POINTWISE = (
    NORMS
    | DROPOUTS
    | set(ACTS)
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
NO_CHANNELS = (
    (POINTWISE - NORMS - {"PReLU"})
    | {"Sequential", "ModuleList", "ModuleDict", "Flatten", "Unflatten", "Softmax", "LogSoftmax", "Upsample"}
    | {
        f"{pool}{d}d"
        for pool in ("MaxPool", "AvgPool", "AdaptiveMaxPool", "AdaptiveAvgPool")
        for d in (1, 2, 3)
    }
)


_HELPER = '''class {name}({nn}.Module):
    """Residual connection: x + body(x)."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)
'''


@dataclass(eq=False)
class Seq:
    """Layers applied one after another: the arguments of ``nn.Sequential(...)`` or a list's elements."""

    node: cst.Call | cst.List

    @property
    def items(self) -> Sequence[cst.Arg | cst.BaseElement]:
        return self.node.args if isinstance(self.node, cst.Call) else self.node.elements


@dataclass(eq=False)
class Layer:
    """A call that builds a torch.nn layer, and where it sits in a sequence (if it does)."""

    call: cst.Call
    name: str
    seq: Seq | None = None
    index: int = 0


@dataclass
class Change:
    """One mutation ready to render: edits keyed by original node, applied to the updated node."""

    description: str
    edits: dict[cst.CSTNode, Edit]
    helper: bool = False


Site = Callable[[np.random.Generator], Change]


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


class Parsed:
    """A parsed candidate: its torch.nn layers and sequences, and how new code names ``torch.nn``."""

    def __init__(self, code: str) -> None:
        try:
            self.module = cst.parse_module(code)
        except cst.ParserSyntaxError as exc:
            raise MutationError(f"cannot parse the code: {exc.message}") from None
        seen = _Collector()
        self.module.visit(seen)
        self.parent = seen.parent
        self.aliases = import_aliases(seen.imports, standard=True)
        top = import_aliases(i for i in seen.imports if self.parent[self.parent[i]] is self.module)
        nn_names = sorted(name for name, targets in top.items() if "torch.nn" in targets)
        self.nn_missing = not nn_names and "torch" not in top.get("torch", ())
        self.nn = "nn" if "nn" in nn_names or self.nn_missing else nn_names[0] if nn_names else "torch.nn"
        self.used_nn = False
        self._find_layers(seen)
        self._find_activations(seen)
        self._find_helper(seen)

    def _find_layers(self, seen: _Collector) -> None:
        """torch.nn layer calls and their sequences, functional calls, flatten views, calls of local blocks."""
        self.layers: list[Layer] = []
        self.fcalls: list[tuple[cst.Call, str]] = []
        self.views: list[cst.BaseExpression] = []
        self.local_calls: list[cst.Call] = []
        local = {s.name.value for s in self.module.body if isinstance(s, (cst.ClassDef, cst.FunctionDef))}
        for call in seen.calls:
            name = torch_name(call.func, self.aliases)
            if name.startswith("torch.nn.functional."):
                self.fcalls.append((call, name.rpartition(".")[2]))
            elif name.startswith("torch.nn.") and name[9:].isidentifier() and name[9:10].isupper():
                self.layers.append(Layer(call, name[9:]))
            elif isinstance(call.func, cst.Name) and call.func.value in local:
                self.local_calls.append(call)
            if isinstance(call.func, cst.Attribute) and call.func.attr.value in ("view", "reshape"):
                shape = _shape(call.args[1:] if name == "torch.reshape" else call.args)
                if len(shape) == 2:
                    self.views.append(shape[1])
        self.by_call = {layer.call: layer for layer in self.layers}
        for node in [layer.call for layer in self.layers if layer.name == "Sequential"] + seen.lists:
            seq = Seq(node)
            for i, item in enumerate(seq.items):
                if (layer := self.by_call.get(item.value)) is not None:
                    layer.seq, layer.index = seq, i
        self.sized = [layer for layer in self.layers if layer.name in SIZED]
        named = {layer for layer in self.sized if "class" in self.code(self.out(layer)).lower()}
        self.classifiers = [layer for layer in self.sized if layer in named or layer is self.sized[-1]]

    def _find_activations(self, seen: _Collector) -> None:
        """References to activation classes and functions: (node, function name, is a class)."""
        self.acts: list[tuple[cst.Name | cst.Attribute, str, bool]] = []
        for node in seen.refs:
            if isinstance(node, cst.Name) and not self._free(node):
                continue
            name = torch_name(node, self.aliases)
            if name.startswith("torch.nn.functional.") and name[20:] in ACT_CLASS:
                self.acts.append((node, name[20:], False))
            elif name.startswith("torch.nn.") and name[9:] in ACTS:
                self.acts.append((node, ACTS[name[9:]], True))

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

    def code(self, node: cst.CSTNode | None) -> str:
        return "" if node is None else self.module.code_for_node(node)

    def expr(self, text: str) -> cst.BaseExpression:
        self.used_nn = True
        return cst.parse_expression(text)

    def value(self, layer: Layer, param: str) -> cst.BaseExpression | None:
        params = PARAMS.get(layer.name, ())
        arg = bound_arg(layer.call, params, param) if param in params else None
        return None if arg is None else arg.value

    def out(self, layer: Layer) -> cst.BaseExpression | None:
        return self.value(layer, "out_features" if "Linear" in layer.name else "out_channels")

    def inn(self, layer: Layer) -> cst.BaseExpression | None:
        return self.value(layer, "in_features" if "Linear" in layer.name else "in_channels")

    def item_layer(self, seq: Seq, index: int) -> Layer | None:
        return self.by_call.get(seq.items[index].value) if 0 <= index < len(seq.items) else None

    def block_end(self, layer: Layer) -> int:
        """Index after ``layer`` and the norms, activations and dropouts that follow it in its sequence."""
        assert layer.seq is not None
        end = layer.index + 1
        while (nxt := self.item_layer(layer.seq, end)) is not None and nxt.name in POINTWISE:
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

    def splice(self, seq: Seq, start: int, stop: int, texts: Sequence[str]) -> dict[cst.CSTNode, Edit]:
        """Replace items ``start:stop`` of a sequence by new layers written as code."""
        make = cst.Arg if isinstance(seq.node, cst.Call) else cst.Element
        new = [make(value=self.expr(text)) for text in texts]
        key = "args" if isinstance(seq.node, cst.Call) else "elements"
        return {seq.node: lambda u: u.with_changes(**{key: splice_items(getattr(u, key), start, stop, new)})}

    def deepen(self, copies: dict[Layer, tuple[str, int]]) -> dict[cst.CSTNode, Edit]:
        """After each layer's block, ``n`` copies of a new layer written ``text`` (without the torch.nn
        prefix), each followed by the block's norms, activations and dropouts (a ReLU when it has none).
        A standalone layer becomes ``nn.Sequential(layer, nn.ReLU(), copy, ...)``."""
        edits: dict[cst.CSTNode, Edit] = {}
        inserts: dict[Seq, list[tuple[int, list[str]]]] = {}
        for layer, (text, n) in copies.items():
            new = f"{self.nn}.{text}"
            if layer.seq is None:
                copied = ", ".join([f"{self.nn}.ReLU(), {new}"] * n)
                edits |= self.replace(layer, f"{self.nn}.Sequential({{}}, {copied})")
                continue
            stop = self.block_end(layer)
            tail = [self.code(item.value) for item in layer.seq.items[layer.index + 1 : stop]]
            block = [new, *(tail or [f"{self.nn}.ReLU()"])]
            inserts.setdefault(layer.seq, []).append((stop, block * n))
        for seq, at in inserts.items():  # the last position first, so earlier indices stay valid
            splices = [
                self.splice(seq, stop, stop, texts)[seq.node] for stop, texts in sorted(at, reverse=True)
            ]
            edits[seq.node] = chain(*splices)
        return edits

    def replace(self, layer: Layer, template: str) -> dict[cst.CSTNode, Edit]:
        """Replace a standalone layer call by ``template`` with ``{}`` standing for the call."""
        return {layer.call: lambda u: self.expr(template.replace("{}", self.code(u)))}

    def render(self, change: Change) -> str:
        module = apply_edits(self.module, change.edits)
        if change.helper and not self.has_helper:
            helper = cst.parse_statement(_HELPER.format(name=self.helper, nn=self.nn))
            module = after_imports(module, helper.with_changes(leading_lines=[cst.EmptyLine()] * 2))
        if (self.used_nn or change.helper) and self.nn_missing:
            module = after_imports(module, cst.parse_statement("import torch.nn as nn\n"))
        return module.code


def _shape(args: Sequence[cst.Arg]) -> list[cst.BaseExpression]:
    """The size expressions of a view/reshape call: its positional arguments, or one tuple's elements."""
    values = [a.value for a in args if a.keyword is None and not a.star]
    if len(values) == 1 and isinstance(values[0], (cst.Tuple, cst.List)):
        return [e.value for e in values[0].elements]
    return values


def dims(name: str) -> int:
    """Spatial dimensions of a layer: 2 for Conv2d, 0 for Linear."""
    return int(name[-2]) if name[-1] == "d" and name[-2].isdigit() else 0


def preserving(ctx: Parsed, layer: Layer) -> bool:
    """A Linear or Conv layer whose output has its input's shape: in == out, stride 1, same padding."""
    inn, out = ctx.inn(layer), ctx.out(layer)
    if inn is None or out is None or ctx.code(inn) != ctx.code(out):
        return False
    if layer.name == "Linear":
        return True
    if layer.name not in CONVS:
        return False
    stride, pad, dil = ctx.value(layer, "stride"), ctx.value(layer, "padding"), ctx.value(layer, "dilation")
    if stride is not None and same_ints(stride) != 1:
        return False
    if isinstance(pad, cst.SimpleString):
        return pad.evaluated_value == "same"
    k = same_ints(ctx.value(layer, "kernel_size"))
    d = 1 if dil is None else same_ints(dil)
    p = 0 if pad is None else same_ints(pad)
    return k is not None and d is not None and p == d * (k - 1) // 2
