"""Static checks on candidate code: parse with libcst, refuse dangerous constructs, normalise, hash.

The driver never imports or executes a candidate; this module only reads its text. These checks are a
speed bump that gives the model a precise repair message. What holds is the sandbox
(docs/architecture.md, "The trust boundary").

The refusal rules and the visitor that applies them are one cohesive thing, kept in one file so that
each rule can be read next to the code that enforces it.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import BuiltinAssignment, MetadataWrapper, PositionProvider, ScopeProvider

from llmnas.candidate import bounded
from llmnas.candidate.names import Aliases, import_aliases, imports_in, qualified

DEFAULT_ALLOWED_IMPORTS: frozenset[str] = frozenset(
    {
        "torch",
        "torch.nn",
        "torch.nn.functional",
        "math",
        "typing",
        "collections",
        "functools",
        "itertools",
        "dataclasses",
    }
)


def allowed_imports(extra: tuple[str, ...] | list[str] = ()) -> frozenset[str]:
    """The import allow-list of a run: the defaults plus the user's ``--allow-import`` modules."""
    return DEFAULT_ALLOWED_IMPORTS | frozenset(extra)


CONTRACT = (
    "`build_model(input_shape: tuple[int, ...], num_classes: int) -> torch.nn.Module` "
    "or a `Model(nn.Module)` class"
)

# Builtins that reach the interpreter, the file system or the user.
_FORBIDDEN_BUILTINS = frozenset(
    "eval exec compile __import__ open input breakpoint globals locals vars memoryview help exit quit".split()  # noqa: SIM905
)
_FORBIDDEN_MODULES = frozenset(
    "os sys subprocess socket ctypes importlib pickle marshal shutil builtins signal threading "  # noqa: SIM905
    "multiprocessing inspect gc io pathlib tempfile urllib http requests".split()
)
_ATTR_FUNCTIONS = frozenset({"getattr", "setattr", "delattr"})
# `__init__` is needed for `super().__init__()`; `__call__` only re-enters the object's own forward.
# Every other dunder attribute is a road to frames, globals, classes or builtins.
_SAFE_DUNDERS = frozenset({"__init__", "__call__"})
# Attribute names refused on any object: loaders, compilers and shell entry points.
_FORBIDDEN_ATTRS = frozenset(
    "load save hub cpp_extension load_library load_inline from_file compile system get_type_hints".split()  # noqa: SIM905
)
# Qualified names refused after resolving import aliases (`import torch as t; t.ops` included).
_FORBIDDEN_QUALIFIED = (
    "torch.load",
    "torch.save",
    "torch.hub",
    "torch.ops",
    "torch.classes",
    "torch.library",
    "torch.package",
    "torch.multiprocessing",
    "torch.distributed",
    "torch.utils",
    "torch.serialization",
    "torch.jit.load",
    "torch._",
)
_DUNDER = re.compile(r"__\w+__")
_MAX_REPORTED = 3


@dataclass(frozen=True)
class Checked:
    """A candidate that passed the static checks: normalised code and its id."""

    code: str
    candidate_id: str


@dataclass(frozen=True)
class Rejection:
    """A candidate refused before it ran; `message` is written to be shown to the model."""

    stage: str
    message: str


def check(
    code: str,
    allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS,
    max_bytes: int = bounded.MAX_CANDIDATE_BYTES,
    timeout: float = bounded.TIME_LIMIT_S,
) -> Checked | Rejection:
    """Statically check `code` against the candidate contract; never imports or runs it.

    Text over ``max_bytes`` is refused before it is parsed; the parse and the checks run in the limited
    child of candidate/bounded.py, so no text holds the driver longer than ``timeout`` seconds."""
    over = bounded.too_big(code, max_bytes)
    if over:
        return Rejection("static", f"{over}; write a smaller module")
    try:
        verdict = bounded.check(code, frozenset(allowed_imports), timeout)
    except bounded.Failed as e:
        return Rejection("static", f"checking the code {e}; simplify it")
    if verdict["kind"] == "rejection":
        return Rejection(verdict["stage"], verdict["message"])
    return Checked(verdict["code"], candidate_id(verdict["code"]))  # the id is computed on this side


def check_unbounded(
    code: str, allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
) -> Checked | Rejection:
    """`check` in this process with no limits: for the child of candidate/bounded.py only."""
    try:
        ast.parse(code)
        module = cst.parse_module(code)
    except SyntaxError as e:
        where = f" at line {e.lineno}, column {e.offset}" if e.lineno else ""
        return Rejection("static", f"syntax error{where}: {e.msg}")
    except (RecursionError, MemoryError, ValueError) as e:  # deep nesting, NUL bytes
        return Rejection("static", f"cannot parse the code ({type(e).__name__}: {e}); simplify it")
    except cst.ParserSyntaxError as e:
        tabbed = re.search(r"(?m)^ *\t", code)
        if tabbed:  # Python tolerates some tab/space mixes that libcst cannot read
            line = code.count("\n", 0, tabbed.start()) + 1
            return Rejection(
                "static", f"line {line}: inconsistent use of tabs and spaces; indent with spaces only"
            )
        return Rejection("static", f"syntax error at line {e.raw_line}, column {e.raw_column}: {e.message}")
    checker = _Checker(frozenset(allowed_imports))
    try:
        MetadataWrapper(module, unsafe_skip_copy=True).visit(checker)
        normalised = "" if checker.problems else normalise(code)
    except (RecursionError, MemoryError) as e:  # hostile nesting must not crash the driver
        return Rejection("static", f"could not analyse the code ({type(e).__name__}); simplify it")
    problems = sorted(set(checker.problems))
    if problems:
        shown = [f"line {line}: {msg}" if line else msg for line, msg in problems[:_MAX_REPORTED]]
        more = len(problems) - _MAX_REPORTED
        return Rejection("static", "; ".join(shown) + (f" (and {more} more)" if more > 0 else ""))
    return Checked(normalised, candidate_id(normalised))


def normalise(code: str) -> str:
    """Canonical form: no comments, docstrings or `__main__` blocks; one formatting. Same behaviour."""
    try:
        cst.parse_module(code)
        tree = ast.parse(code)
    except (cst.ParserSyntaxError, SyntaxError) as e:
        raise ValueError(f"cannot parse candidate code: {e}") from e
    tree.body = [s for s in tree.body if not ast_is_main_guard(s)]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            kept = [s for s in body if not is_string_statement(s)]
            node.body = kept or [ast.Pass()]
    return ast.unparse(tree).strip() + "\n"


def candidate_id(normalised_code: str) -> str:
    """The id of a candidate: the first 12 hex digits of the sha256 of its normalised code."""
    return hashlib.sha256(normalised_code.encode("utf-8")).hexdigest()[:12]


def allowed_top_level(stmt: cst.CSTNode) -> bool:
    """Whether a top-level statement is inert at import time (imports, defs, constants, docstrings)."""
    if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) or _is_main_guard(stmt):
        return True
    if not isinstance(stmt, cst.SimpleStatementLine):
        return False
    return all(_allowed_small_statement(s) for s in stmt.body)


def _allowed_small_statement(s: cst.BaseSmallStatement) -> bool:
    if isinstance(s, (cst.Import, cst.ImportFrom, cst.Pass)):
        return True
    if isinstance(s, cst.Expr):
        return isinstance(s.value, (cst.SimpleString, cst.ConcatenatedString))
    if isinstance(s, cst.Assign):
        targets = [t.target for t in s.targets]
        return all(_constant_target(t) for t in targets) and _is_inert(s.value)
    if isinstance(s, cst.AnnAssign):
        return _constant_target(s.target) and (s.value is None or _is_inert(s.value))
    return False


def _constant_target(target: cst.BaseExpression) -> bool:
    return isinstance(target, cst.Name) and (not _DUNDER.fullmatch(target.value) or target.value == "__all__")


def _is_inert(expr: cst.BaseExpression) -> bool:
    """Literals, names, attribute references and containers of those: nothing that calls."""
    if isinstance(expr, (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.Ellipsis, cst.Name)):
        return True
    if isinstance(expr, cst.ConcatenatedString):
        return _is_inert(expr.left) and _is_inert(expr.right)
    if isinstance(expr, cst.Attribute):
        return _is_inert(expr.value)
    if isinstance(expr, (cst.Tuple, cst.List, cst.Set)):
        return all(_is_inert(e.value) for e in expr.elements)
    if isinstance(expr, cst.Dict):
        return all(
            isinstance(e, cst.DictElement) and _is_inert(e.key) and _is_inert(e.value) for e in expr.elements
        )
    if isinstance(expr, cst.UnaryOperation):
        return _is_inert(expr.expression)
    if isinstance(expr, cst.BinaryOperation):
        return _is_inert(expr.left) and _is_inert(expr.right)
    if isinstance(expr, cst.Subscript):
        return _is_inert(expr.value) and all(
            isinstance(e.slice, cst.Index) and _is_inert(e.slice.value) for e in expr.slice
        )
    return False


def _is_main_guard(stmt: cst.CSTNode) -> bool:
    if not isinstance(stmt, cst.If):
        return False
    test = stmt.test
    if not (isinstance(test, cst.Comparison) and len(test.comparisons) == 1):
        return False
    right = test.comparisons[0].comparator
    return (
        isinstance(test.left, cst.Name)
        and test.left.value == "__name__"
        and isinstance(test.comparisons[0].operator, cst.Equal)
        and isinstance(right, cst.SimpleString)
        and right.evaluated_value == "__main__"
    )


def ast_is_main_guard(stmt: ast.stmt) -> bool:
    t = getattr(stmt, "test", None)
    return (
        isinstance(stmt, ast.If)
        and isinstance(t, ast.Compare)
        and isinstance(t.left, ast.Name)
        and t.left.id == "__name__"
        and len(t.ops) == 1
        and isinstance(t.ops[0], ast.Eq)
        and isinstance(t.comparators[0], ast.Constant)
        and t.comparators[0].value == "__main__"
    )


def is_string_statement(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _snippet(node: cst.CSTNode) -> str:
    text = cst.Module([]).code_for_node(node).strip().splitlines()[0]
    return text if len(text) <= 60 else text[:57] + "..."


def _docstring(body: cst.BaseSuite | Sequence[cst.BaseStatement]) -> cst.CSTNode | None:
    stmts = body.body if isinstance(body, cst.IndentedBlock) else body
    if isinstance(stmts, Sequence) and stmts and isinstance(stmts[0], cst.SimpleStatementLine):
        first = stmts[0].body[0]
        if isinstance(first, cst.Expr) and isinstance(
            first.value, (cst.SimpleString, cst.ConcatenatedString)
        ):
            return first.value
    return None


class _Checker(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider, ScopeProvider)

    def __init__(self, allowed_imports: frozenset[str]) -> None:
        super().__init__()
        self.allowed = allowed_imports
        self.problems: list[tuple[int, str]] = []
        self._accesses: dict[int, bool] = {}  # id(Name) -> whether it resolves to a binding in the file
        self._approved: set[int] = set()  # getattr-family names called with a safe literal
        self._docstrings: set[int] = set()
        self._main_guards: set[int] = set()
        self._reported_chains: set[int] = set()
        self._aliases: Aliases = {}

    def _report(self, node: cst.CSTNode, message: str) -> None:
        self.problems.append((self.get_metadata(PositionProvider, node).start.line, message))

    def _allowed_list(self) -> str:
        return ", ".join(sorted(self.allowed))

    def visit_Module(self, node: cst.Module) -> None:
        self._aliases = import_aliases(imports_in(node))
        for scope in {s for s in self.metadata[ScopeProvider].values() if s is not None}:
            for access in scope.accesses:
                bound = any(not isinstance(a, BuiltinAssignment) for a in access.referents)
                self._accesses[id(access.node)] = bound
        self._note_docstring(node.body)
        self._main_guards = {id(s) for s in node.body if _is_main_guard(s)}
        has_entry = False
        for stmt in node.body:
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == "build_model":
                has_entry = True
                self._check_build_model_signature(stmt)
            elif isinstance(stmt, cst.ClassDef) and stmt.name.value == "Model":
                has_entry = True
            if not allowed_top_level(stmt):
                self._report(
                    stmt,
                    f"top-level statement `{_snippet(stmt)}` would run at import time; "
                    "move it into build_model or delete it",
                )
        if not has_entry:
            self.problems.append((0, f"no model found: define {CONTRACT} at the top level"))

    def _check_build_model_signature(self, fn: cst.FunctionDef) -> None:
        p = fn.params
        positional = [*p.posonly_params, *p.params]
        required = [q for q in positional if q.default is None]
        required_kwonly = [q.name.value for q in p.kwonly_params if q.default is None]
        takes_two = len(positional) >= 2 or isinstance(p.star_arg, cst.Param)
        if fn.asynchronous is not None:
            self._report(fn, "build_model must be a plain function, not `async def`")
        elif not takes_two or len(required) > 2 or required_kwonly:
            self._report(
                fn,
                f"build_model must be callable as build_model(input_shape, num_classes); expected {CONTRACT}",
            )

    def _note_docstring(self, body: cst.BaseSuite | Sequence[cst.BaseStatement]) -> None:
        doc = _docstring(body)
        if doc is not None:
            self._docstrings.add(id(doc))

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._note_docstring(node.body)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._note_docstring(node.body)

    def visit_If(self, node: cst.If) -> bool:
        return id(node) not in self._main_guards  # stripped by normalise before anything runs

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            name = get_full_name_for_node(alias.name)
            if name not in self.allowed:
                self._report(
                    node, f"`import {name}` is not allowed (allowed imports: {self._allowed_list()})"
                )
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if node.relative:
            self._report(
                node, "relative imports are not allowed; a candidate is a single self-contained file"
            )
            return False
        module = get_full_name_for_node(node.module)
        if module == "__future__":
            return False
        if module not in self.allowed:
            self._report(
                node, f"`from {module} import ...` is not allowed (allowed imports: {self._allowed_list()})"
            )
            return False
        if isinstance(node.names, cst.ImportStar):
            self._report(node, f"`from {module} import *` is not allowed; import names explicitly")
            return False
        for alias in node.names:
            name = get_full_name_for_node(alias.name)
            qualified = f"{module}.{name}"
            if qualified not in self.allowed and (
                _forbidden_attr(name) or _forbidden_qualified(qualified) or name in _FORBIDDEN_BUILTINS
            ):
                self._report(node, f"`from {module} import {name}` is not allowed")
        return False

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if id(node) in self._reported_chains:  # part of a chain already reported; names still checked
            return
        bad = next((q for q in sorted(qualified(node, self._aliases)) if _forbidden_qualified(q)), None)
        if _forbidden_attr(node.attr.value) or bad:
            self._report(node, f"attribute `{bad or _snippet(node)}` is not allowed")
            self._reported_chains |= {id(a) for a in _spine(node.value)}
        elif _private_outside(node):
            self._report(
                node, f"private attribute `{_snippet(node)}` of an object not defined here is not allowed"
            )
            self._reported_chains |= {id(a) for a in _spine(node.value)}

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not (isinstance(func, cst.Name) and func.value in _ATTR_FUNCTIONS) or self._accesses.get(id(func)):
            return
        name_arg = node.args[1].value if len(node.args) > 1 else None
        if isinstance(name_arg, cst.SimpleString) and isinstance(name_arg.evaluated_value, str):
            value = name_arg.evaluated_value
            if _forbidden_attr(value):
                self._report(node, f"`{func.value}(..., {value!r})` is not allowed")
        else:
            self._report(
                node,
                f"`{func.value}` needs a plain string literal as the attribute name; "
                "use nn.ModuleList or nn.ModuleDict instead of computed attribute names",
            )
        self._approved.add(id(func))  # judged here, by its arguments

    def visit_Name(self, node: cst.Name) -> None:
        bound = self._accesses.get(id(node))
        if bound is None or id(node) in self._approved:
            return  # a definition, an attribute name or a keyword, not a use
        name = node.value
        if _DUNDER.fullmatch(name) or (
            not bound
            and (name in _FORBIDDEN_BUILTINS or name in _FORBIDDEN_MODULES or name in _ATTR_FUNCTIONS)
        ):
            self._report(node, f"`{name}` is not allowed in candidate code")

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        if id(node) not in self._docstrings:
            value = node.evaluated_value
            decoded = value.decode("latin-1") if isinstance(value, bytes) else value
            self._check_text(node, f"{node.value} {decoded}")

    def visit_ConcatenatedString(self, node: cst.ConcatenatedString) -> bool:
        if id(node) in self._docstrings:
            return False
        value = node.evaluated_value
        if isinstance(value, (str, bytes)):
            self._check_text(node, value if isinstance(value, str) else value.decode("latin-1"))
        return True

    def visit_FormattedStringText(self, node: cst.FormattedStringText) -> None:
        self._check_text(node, node.value)

    def _check_text(self, node: cst.CSTNode, text: str) -> None:
        """Refuse dunder names in string data: they feed format strings and attribute lookups."""
        smuggled = [d for d in _DUNDER.findall(text) if d not in _SAFE_DUNDERS]
        if smuggled:
            self._report(node, f"string containing `{smuggled[0]}` is not allowed")


def _spine(expr: cst.BaseExpression) -> list[cst.Attribute]:
    """The attributes of a chain like `a.b[0].c().d`, outermost first."""
    found = []
    while isinstance(expr, (cst.Attribute, cst.Subscript, cst.Call)):
        if isinstance(expr, cst.Attribute):
            found.append(expr)
        expr = expr.func if isinstance(expr, cst.Call) else expr.value
    return found


def _private_outside(node: cst.Attribute) -> bool:
    """``x._name`` where ``x`` is not ``self``/``cls``: library internals are roads around the checks
    (``typing.ForwardRef(...)._evaluate`` evaluates arbitrary code)."""
    name = node.attr.value
    if not name.startswith("_") or name in _SAFE_DUNDERS:
        return False
    return not (isinstance(node.value, cst.Name) and node.value.value in ("self", "cls"))


def _forbidden_attr(name: str) -> bool:
    dunder = _DUNDER.fullmatch(name) is not None and name not in _SAFE_DUNDERS
    return dunder or name in _FORBIDDEN_ATTRS or name in _FORBIDDEN_MODULES or name.startswith("_C")


def _forbidden_qualified(name: str) -> bool:
    return any(name == p or name.startswith(p if p.endswith("_") else p + ".") for p in _FORBIDDEN_QUALIFIED)
