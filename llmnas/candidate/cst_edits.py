"""libcst editing primitives: read and write literals and arguments, splice sequences, apply edits.

Nothing here knows about torch; the mutations (mutations.py) build on these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import libcst as cst

Edit = Callable[[cst.CSTNode], cst.CSTNode]


def apply_edits(module: cst.Module, edits: dict[cst.CSTNode, Edit]) -> cst.Module:
    """``module`` with each edit applied to the node it is keyed by (inner edits first)."""
    return module.visit(_Replace(edits))


def chain(*edits: Edit) -> Edit:
    """One edit that applies ``edits`` in order."""

    def apply(node: cst.CSTNode) -> cst.CSTNode:
        for edit in edits:
            node = edit(node)
        return node

    return apply


class _Replace(cst.CSTTransformer):
    """The transformer behind `apply_edits`."""

    def __init__(self, edits: dict[cst.CSTNode, Edit]) -> None:
        super().__init__()
        self.edits = edits

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:
        edit = self.edits.get(original_node)
        return updated_node if edit is None else edit(updated_node)


def bound_arg(call: cst.Call, params: Sequence[str], param: str) -> cst.Arg | None:
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


def int_value(node: cst.CSTNode | None) -> int | None:
    return node.evaluated_value if isinstance(node, cst.Integer) else None


def num_value(node: cst.CSTNode | None) -> float | None:
    return float(node.evaluated_value) if isinstance(node, (cst.Integer, cst.Float)) else None


def same_ints(node: cst.CSTNode | None) -> int | None:
    """An integer literal, or the value of a tuple/list of equal integer literals like ``(3, 3)``."""
    if isinstance(node, (cst.Tuple, cst.List)):
        values = {int_value(e.value) for e in node.elements}
        return values.pop() if len(values) == 1 else None
    return int_value(node)


def set_ints(node: cst.CSTNode, value: int) -> cst.CSTNode:
    if isinstance(node, (cst.Tuple, cst.List)):
        return node.with_changes(
            elements=[e.with_changes(value=set_ints(e.value, value)) for e in node.elements]
        )
    return node.with_changes(value=str(value))


def factor(expr: cst.BaseExpression | None, value: int) -> cst.Integer | None:
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
    return next((f for f in (factors[0], factors[-1]) if int_value(f) == value), None)


def kwarg(name: str, value: cst.BaseExpression) -> cst.Arg:
    bare = cst.SimpleWhitespace("")
    return cst.Arg(value=value, keyword=cst.Name(name), equal=cst.AssignEqual(bare, bare))


def splice_items(items: Sequence, start: int, stop: int, new: Sequence) -> tuple:
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


def after_imports(module: cst.Module, stmt: cst.BaseStatement) -> cst.Module:
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
