"""What a name in candidate code stands for: torch-name resolution, in one place.

`import_aliases` reads what a module's imports bind (``import torch.nn as nn`` binds ``nn`` to
``torch.nn``), every binding of a name and regardless of scope, so a check sees all a name may be;
`qualified` resolves a reference through them (``nn.Conv2d`` -> ``torch.nn.Conv2d``). `last_name` is
the loose match for reply fragments, whose imports may sit in another block or be missing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping

import libcst as cst

# The conventional names of the standard imports: name -> (module, the line that imports it).
STANDARD_IMPORTS = {
    "torch": ("torch", "import torch"),
    "nn": ("torch.nn", "import torch.nn as nn"),
    "F": ("torch.nn.functional", "import torch.nn.functional as F"),
    "math": ("math", "import math"),
}

Aliases = Mapping[str, frozenset[str]]


def import_aliases(imports: Iterable[cst.Import | cst.ImportFrom], standard: bool = False) -> Aliases:
    """Local name -> what these import statements bind to it; with `standard`, a conventional name
    no import binds (``nn``, ``F``...) stands for its usual module."""
    found: dict[str, set[str]] = {}
    for node in imports:
        if isinstance(node, cst.Import):
            for alias in node.names:
                name = dotted(alias.name) or ""
                if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                    found.setdefault(alias.asname.name.value, set()).add(name)
                else:
                    found.setdefault(name.partition(".")[0], set()).add(name.partition(".")[0])
        elif node.module is not None and not node.relative and not isinstance(node.names, cst.ImportStar):
            module = dotted(node.module)
            for alias in node.names:
                name = dotted(alias.name) or ""
                local = alias.asname.name if alias.asname is not None else None
                found.setdefault(local.value if isinstance(local, cst.Name) else name, set()).add(
                    f"{module}.{name}"
                )
    defaults = {name: {module} for name, (module, _) in STANDARD_IMPORTS.items()} if standard else {}
    return {name: frozenset(targets) for name, targets in (defaults | found).items()}


def qualified(expr: cst.BaseExpression, aliases: Aliases) -> frozenset[str]:
    """The qualified names a reference like ``nn.Conv2d`` may stand for (none if no import binds its head)."""
    name = dotted(expr)
    if name is None:
        return frozenset()
    head, _, rest = name.partition(".")
    return frozenset(f"{target}.{rest}" if rest else target for target in aliases.get(head, ()))


def torch_name(expr: cst.BaseExpression, aliases: Aliases) -> str:
    """The ``torch...`` name a reference stands for, or ""."""
    return min((q for q in qualified(expr, aliases) if q.partition(".")[0] == "torch"), default="")


def dotted(node: cst.CSTNode | ast.AST) -> str | None:
    """``a.b.c`` for a chain of names (libcst or ast), else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, (cst.Attribute, ast.Attribute)):
        base = dotted(node.value)
        attr = node.attr.value if isinstance(node, cst.Attribute) else node.attr
        return None if base is None else f"{base}.{attr}"
    return None


def last_name(node: cst.CSTNode | ast.AST) -> str:
    """The final name of a reference, whatever precedes it: ``Sequential`` for ``nn.Sequential``; else ""."""
    if isinstance(node, (cst.Name, ast.Name)):
        return node.value if isinstance(node, cst.Name) else node.id
    if isinstance(node, cst.Attribute):
        return node.attr.value
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def imports_in(node: cst.CSTNode) -> list[cst.Import | cst.ImportFrom]:
    """Every import statement under `node`, nested ones included, in source order."""
    found: list[cst.Import | cst.ImportFrom] = []

    class Imports(cst.CSTVisitor):
        def visit_Import(self, imp: cst.Import) -> bool:
            found.append(imp)
            return False

        def visit_ImportFrom(self, imp: cst.ImportFrom) -> bool:
            found.append(imp)
            return False

    node.visit(Imports())
    return found
