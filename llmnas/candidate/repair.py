"""Repair extracted candidate code: give it an entry point, drop what would run at import or is unused,
add the standard imports it forgot. Each step says what it did in a note. Pure: never runs code.

`FACTORY`, `model_classes` and `root_classes` say what counts as the model, for extract.py too.
"""

from __future__ import annotations

import ast
import re

import libcst as cst
from libcst.helpers import get_full_name_for_node

from llmnas.candidate.checks import (
    CONTRACT,
    DEFAULT_ALLOWED_IMPORTS,
    Rejection,
    allowed_top_level,
    is_string_statement,
)
from llmnas.candidate.names import STANDARD_IMPORTS, dotted, last_name

FACTORY = re.compile(r"^(?:build|create|make|get)_?(?:model|net|network|cnn|mlp|classifier)$", re.I)
_MODULE_BASES = frozenset({"Module", "Sequential"})

# How the generated build_model fills a constructor's parameters. Required parameters may take any
# of these; parameters with defaults only the unambiguous ones (the model's own defaults win).
_UNAMBIGUOUS_ARGS = {
    **dict.fromkeys(("input_shape", "in_shape", "image_shape", "img_shape", "shape"), "input_shape"),
    **dict.fromkeys(
        (
            "num_classes",
            "n_classes",
            "nclasses",
            "classes",
            "num_labels",
            "n_labels",
            "num_outputs",
            "n_outputs",
            "output_classes",
        ),
        "num_classes",
    ),
    **dict.fromkeys(
        ("in_channels", "input_channels", "in_chans", "in_ch", "in_c", "in_channel", "input_channel"),
        "input_shape[0]",
    ),
}


_REQUIRED_ONLY_ARGS = {
    **dict.fromkeys(
        ("output_dim", "out_dim", "output_size", "out_features", "n_out", "num_out"), "num_classes"
    ),
    **dict.fromkeys(
        ("input_dim", "input_size", "in_features", "in_dim", "n_inputs", "num_inputs", "input_features"),
        "math.prod(input_shape)",
    ),
}


def repair(code: str, allowed: frozenset[str], notes: list[str]) -> str | Rejection:
    """Give the code an entry point, drop what would run at import or is unused, add imports; each
    repair appends a note. libcst may refuse code that ast accepts (cst.ParserSyntaxError)."""
    module = cst.parse_module(code)
    body = list(module.body)
    if not any(defined_name(s) in ("build_model", "Model") for s in body):
        problem = _add_entry(body, ast.parse(code), notes)
        if problem is not None:
            return problem
    body = _prune(body, notes)
    body = _drop_unused_imports(body, allowed, notes)
    code = module.with_changes(body=body).code
    for line in missing_imports(code, allowed):
        notes.append(f"added {line}")
    return add_missing_imports(code, allowed).rstrip("\n") + "\n"


def _add_entry(body: list[cst.BaseStatement], tree: ast.Module, notes: list[str]) -> Rejection | None:
    """Add `build_model` for a factory function, the root nn.Module class or a top-level Sequential.

    A misnamed class keeps its name (renaming would miss `super(Net, self)` and other references);
    the added build_model constructs it with the contract's values for the parameters it recognises.
    """
    funcs = {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef)}
    classes = {s.name: s for s in tree.body if isinstance(s, ast.ClassDef)}
    factories = [f for f in funcs if FACTORY.match(f)]
    roots = root_classes(list(classes.values())) or model_classes(list(classes.values()))
    if factories or roots:
        target = funcs[factories[-1]] if factories else classes[[c for c in classes if c in roots][-1]]
        call = _constructor_call(target, classes)
        if isinstance(call, Rejection):
            return call
        after = next(i for i, s in enumerate(body) if defined_name(s) == target.name)
        entry = cst.parse_statement(_BUILD_MODEL.format(call=call)).with_changes(leading_lines=_TWO_BLANKS)
        body.insert(after + 1, entry)
        notes.append(f"added build_model() that returns {call}")
        return None
    index = next((i for i, s in enumerate(body) if is_sequential_assign(s)), None)
    if index is None:
        return Rejection("extract", f"the code defines no model: expected {CONTRACT}")
    assign = body[index].body[0]
    value = _code(assign.value)
    body[index] = cst.parse_statement(_BUILD_MODEL.format(call=value)).with_changes(
        leading_lines=body[index].leading_lines
    )
    notes.append(f"wrapped top-level `{assign.targets[0].target.value} = {_short(value)}` in build_model()")
    return None


_TWO_BLANKS = (cst.EmptyLine(), cst.EmptyLine())


_BUILD_MODEL = "def build_model(input_shape: tuple[int, ...], num_classes: int):\n    return {call}\n"


def _code(node: cst.CSTNode) -> str:
    return cst.Module([]).code_for_node(node)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 40 else text[:37] + "..."


def _constructor_call(
    target: ast.FunctionDef | ast.ClassDef, classes: dict[str, ast.ClassDef]
) -> str | Rejection:
    """`Target(...)` with contract values for the parameters it recognises by name."""
    fn = _init_of(target, classes) if isinstance(target, ast.ClassDef) else target
    args, missing = [], []
    if fn is not None:
        a = fn.args
        positional = [*a.posonlyargs, *a.args][1 if isinstance(target, ast.ClassDef) else 0 :]
        first_default = len(positional) - len(a.defaults)
        params = [(p, k < first_default) for k, p in enumerate(positional)]
        params += [(p, d is None) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
        for p, required in params:
            value = _UNAMBIGUOUS_ARGS.get(p.arg.lower()) or (
                required and _REQUIRED_ONLY_ARGS.get(p.arg.lower())
            )
            if value:
                args.append(f"{p.arg}={value}")
            elif required:
                missing.append(p.arg)
    if missing:
        return Rejection(
            "extract",
            f"`{target.name}` needs {', '.join(missing)}, which the contract does not provide; "
            f"define build_model(input_shape, num_classes) that constructs the model",
        )
    return f"{target.name}({', '.join(args)})"


def _init_of(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> ast.FunctionDef | None:
    for stmt in cls.body:
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__init__":
            return stmt
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id in classes and base.id != cls.name:
            return _init_of(classes[base.id], classes)
    return None


def _prune(body: list[cst.BaseStatement], notes: list[str]) -> list[cst.BaseStatement]:
    """Keep imports, constants and what the entry point reaches; drop import-time code and the rest."""
    names = [_names_used(s) for s in body]
    binds = [_names_bound(s) for s in body]
    reached = {
        i
        for i, s in enumerate(body)
        if defined_name(s) in ("build_model", "Model")
        or (isinstance(s, cst.SimpleStatementLine) and allowed_top_level(s) and not _is_import_line(s))
    }
    frontier = list(reached)
    while frontier:
        used = names[frontier.pop()]
        for j, bound in enumerate(binds):
            if j not in reached and bound & used and not _is_import_line(body[j]):
                reached.add(j)
                frontier.append(j)
    kept, unused, run_at_import = [], [], []
    for i, s in enumerate(body):
        if i in reached or _is_import_line(s) or (allowed_top_level(s) and not defined_name(s)):
            kept.append(s)
        elif defined_name(s):
            unused.append(defined_name(s))
        else:
            run_at_import.append(s)
    if unused:
        notes.append(f"dropped unused definitions: {', '.join(unused)}")
    if run_at_import:
        shown = ", ".join(f"`{_short(_code(s.with_changes(leading_lines=())))}`" for s in run_at_import[:2])
        more = f" and {len(run_at_import) - 2} more" if len(run_at_import) > 2 else ""
        notes.append(f"dropped top-level code that would run at import time: {shown}{more}")
    return kept


def _drop_unused_imports(
    body: list[cst.BaseStatement], allowed: frozenset[str], notes: list[str]
) -> list[cst.BaseStatement]:
    """Remove imports outside the allow-list that nothing left uses (typically training code's)."""
    used, dotted = set(), set()
    for s in body:
        if not _is_import_line(s) and not isinstance(s, cst.If):  # the only If left is `__main__`
            collector = _NameCollector()
            s.visit(collector)
            used |= collector.names
            dotted |= collector.dotted
    kept, dropped = [], []
    for s in body:
        if not _is_import_line(s):
            kept.append(s)
            continue
        small = []
        for imp in s.body:
            module = _from_module(imp) if isinstance(imp, cst.ImportFrom) else ""
            aliases = [] if isinstance(imp.names, cst.ImportStar) else list(imp.names)
            keep = [
                a
                for a in aliases
                if _import_allowed(imp, module, a, allowed) or _alias_used(imp, a, used, dotted)
            ]
            dropped += [_import_text(imp, module, a) for a in aliases if a not in keep]
            if keep or isinstance(imp.names, cst.ImportStar):
                keep[-1:] = [k.with_changes(comma=cst.MaybeSentinel.DEFAULT) for k in keep[-1:]]
                small.append(imp.with_changes(names=keep) if keep else imp)
        if small:
            kept.append(s.with_changes(body=small))
    if dropped:
        notes.append(f"dropped unused imports outside the allow-list: {', '.join(dropped)}")
    return kept


def _from_module(imp: cst.ImportFrom) -> str:
    return "." * len(imp.relative) + (get_full_name_for_node(imp.module) or "" if imp.module else "")


def _import_allowed(
    imp: cst.Import | cst.ImportFrom, module: str, alias: cst.ImportAlias, allowed: frozenset[str]
) -> bool:
    return (module if isinstance(imp, cst.ImportFrom) else get_full_name_for_node(alias.name)) in allowed


def _alias_used(
    imp: cst.Import | cst.ImportFrom, alias: cst.ImportAlias, used: set[str], dotted: set[str]
) -> bool:
    name = get_full_name_for_node(alias.name) or ""
    if alias.asname is not None:
        return get_full_name_for_node(alias.asname.name) in used
    if isinstance(imp, cst.ImportFrom) or "." not in name:
        return name in used
    return any(d == name or d.startswith(name + ".") for d in dotted)


def _import_text(imp: cst.Import | cst.ImportFrom, module: str, alias: cst.ImportAlias) -> str:
    name = get_full_name_for_node(alias.name)
    return f"{module}.{name}" if isinstance(imp, cst.ImportFrom) else str(name)


def _is_import_line(stmt: cst.CSTNode) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and all(
        isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body
    )


class _NameCollector(cst.CSTVisitor):
    """Names a node mentions (not attribute names) and the dotted chains it reads, e.g. `torch.optim.Adam`."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.dotted: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        full = get_full_name_for_node(node)
        if full:
            self.dotted.add(full)
        node.value.visit(self)
        return False


def _names_used(stmt: cst.CSTNode) -> set[str]:
    collector = _NameCollector()
    stmt.visit(collector)
    return collector.names


def _names_bound(stmt: cst.CSTNode) -> set[str]:
    if defined_name(stmt):
        return {defined_name(stmt)}
    if not isinstance(stmt, cst.SimpleStatementLine):
        return set()
    bound = set()
    for s in stmt.body:
        targets = [t.target for t in s.targets] if isinstance(s, cst.Assign) else []
        targets += [s.target] if isinstance(s, (cst.AnnAssign, cst.AugAssign)) else []
        bound |= {t.value for t in targets if isinstance(t, cst.Name)}
    return bound


def defined_name(stmt: cst.CSTNode) -> str:
    return stmt.name.value if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) else ""


def model_classes(classes: list[ast.ClassDef]) -> list[str]:
    """Complete nn.Modules: subclasses of Module (directly or through a class here) with a forward."""
    complete: dict[str, bool] = {}
    changed = True
    while changed:
        changed = False
        for c in classes:
            if c.name in complete or not any(
                last_name(b) in _MODULE_BASES or dotted(b) in complete for b in c.bases
            ):
                continue
            has_forward = any(isinstance(s, ast.FunctionDef) and s.name == "forward" for s in c.body)
            inherited = any(
                last_name(b).endswith("Sequential") or complete.get(dotted(b), False) for b in c.bases
            )
            complete[c.name] = has_forward or inherited
            changed = True
    return [name for name, ok in complete.items() if ok]


def root_classes(classes: list[ast.ClassDef]) -> list[str]:
    """Model classes that no other class uses as a part: the model, not its blocks."""
    used: set[str] = set()
    for c in classes:
        used |= {n.id for n in ast.walk(c) if isinstance(n, ast.Name)} - {c.name}
    return [name for name in model_classes(classes) if name not in used]


def is_sequential_assign(stmt: ast.stmt | cst.CSTNode) -> bool:
    """`name = nn.Sequential(...)`, with any prefix to `Sequential`, as an ast or a libcst statement."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        s = stmt.body[0]
        targets = [t.target for t in s.targets] if isinstance(s, cst.Assign) else []
    elif isinstance(stmt, ast.Assign):
        s, targets = stmt, stmt.targets
    else:
        return False
    return (
        len(targets) == 1
        and isinstance(targets[0], (ast.Name, cst.Name))
        and isinstance(s.value, (ast.Call, cst.Call))
        and last_name(s.value.func) == "Sequential"
    )


def unbound_names(tree: ast.AST) -> set[str]:
    """Names the code reads but binds nowhere (scope-insensitive, so builtins are included)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add(node.asname or node.name.split(".")[0])
    return loaded - bound


def missing_imports(code: str, allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS) -> list[str]:
    """Import lines for `torch`, `nn`, `F` and `math` when the code uses them unbound (allow-listed only)."""
    unbound = unbound_names(ast.parse(code))
    return [
        line
        for name, (module, line) in STANDARD_IMPORTS.items()
        if name in unbound and module in allowed_imports
    ]


def add_missing_imports(code: str, allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS) -> str:
    """Insert the lines of `missing_imports` after any module docstring and `__future__` imports.

    `code` must parse (SyntaxError otherwise); code that needs nothing comes back unchanged.
    """
    lines = missing_imports(code, allowed_imports)
    if not lines:
        return code
    tree = ast.parse(code)
    after = 0
    for i, stmt in enumerate(tree.body):
        is_future = isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
        if not (is_future or (i == 0 and is_string_statement(stmt))):
            break
        after = stmt.end_lineno or after
    source = code.splitlines(keepends=True)
    rest = "".join(source[after:])
    gap = "" if not rest.strip() or rest.startswith(("\n", "import ", "from ")) else "\n"
    return "".join(source[:after]) + "\n".join(lines) + "\n" + gap + rest
