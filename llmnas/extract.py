"""Pull candidate code out of a language model's reply, repairing the usual slips on the way.

Handles fenced blocks (``` and ~~~, any or no language tag), unfenced code among prose, several
blocks (the model's block plus the blocks it depends on, joined in order), <think> sections,
truncated replies, a model class under another name, example and training code around the model,
and missing standard imports. Every repair is recorded in `Extracted.notes`. Pure: never runs code.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from dataclasses import dataclass, field

import libcst as cst
from libcst.helpers import get_full_name_for_node

from llmnas.validate import (
    CONTRACT,
    DEFAULT_ALLOWED_IMPORTS,
    Rejection,
    add_missing_imports,
    allowed_top_level,
    missing_imports,
    unbound_names,
)


@dataclass(frozen=True)
class Extracted:
    """Code ready for `validate.check`, and what was repaired to get it."""

    code: str
    notes: tuple[str, ...] = ()


_THINK_SECTION = re.compile(r"<(think(?:ing)?)>.*?</\1>", re.S | re.I)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.I)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.I)
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)")
_PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3", "pytorch"})
_MAGIC_LINE = re.compile(r"^[ \t]*[!%]")
_BLOCK_OPENER = re.compile(
    r"^(?:class|def|async|if|elif|else|for|while|with|try|except|finally)\b.*:\s*(?:#.*)?$"
)
_CODE_START = re.compile(r"^(?:@\w|#|[)\]}])")
_MODELISH = re.compile(r"def\s+build_model\b|class\s+\w+\s*\(.*Module|nn\.Sequential\(")
_REFUSAL = re.compile(r"\b(?:I can(?:no|'|’)t|I(?:'m|’m| am) (?:sorry|unable|not able)|as an AI)\b", re.I)
_FACTORY = re.compile(r"^(?:build|create|make|get)_?(?:model|net|network|cnn|mlp|classifier)$", re.I)
_MODULE_BASES = frozenset({"Module", "Sequential"})
_AUTO_IMPORTED = frozenset({"torch", "nn", "F", "math"})  # add_missing_imports supplies these
_BUILTINS = frozenset(dir(builtins))
_UNPARSEABLE = (ValueError, RecursionError, MemoryError)  # NUL bytes, deep nesting

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


@dataclass
class _Block:
    """One candidate piece of code: a fenced block or a run of code lines among prose."""

    code: str
    tree: ast.Module | None
    error: str = ""
    truncated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def defines(self) -> set[str]:
        return _top_level_names(self.tree) if self.tree else set()

    @property
    def needs(self) -> set[str]:
        return unbound_names(self.tree) - _BUILTINS - _AUTO_IMPORTED if self.tree else set()

    @property
    def classes(self) -> list[ast.ClassDef]:
        return [s for s in self.tree.body if isinstance(s, ast.ClassDef)] if self.tree else []

    @property
    def functions(self) -> list[str]:
        return [s.name for s in self.tree.body if isinstance(s, ast.FunctionDef)] if self.tree else []

    @property
    def has_entry(self) -> bool:
        return "build_model" in self.functions or any(c.name == "Model" for c in self.classes)

    @property
    def has_factory(self) -> bool:
        return any(_FACTORY.match(f) for f in self.functions)

    @property
    def has_sequential(self) -> bool:
        return self.tree is not None and any(_is_sequential_assign(s) for s in self.tree.body)


def extract_code(
    reply: str, allowed_imports: frozenset[str] = DEFAULT_ALLOWED_IMPORTS
) -> Extracted | Rejection:
    """The candidate code in `reply`, or a Rejection(stage="extract") that says what was wrong."""
    if not reply or not reply.strip():
        return _reject(f"empty reply; answer with one ```python block that defines {CONTRACT}")
    notes: list[str] = []
    answer, thinking = _drop_thinking(reply.replace("\r\n", "\n").replace("\r", "\n"), notes)
    fenced, outside = _split_fences(answer)
    sources = [
        ([_parse_block(text, closed) for text, closed in fenced], ""),
        (
            [_parse_block(text, closed) for text, closed in _split_fences(thinking)[0]],
            "used the fenced code inside the unterminated <think> section",
        ),
        (_prose_blocks(outside), "no code fence: took the Python lines from the prose"),
    ]
    for blocks, note in sources:
        picked = _pick(blocks)
        if picked:
            chosen = [blocks[i] for i in picked]
            notes += [note] if note else []
            if len(blocks) > 1:
                which = ", ".join(str(i + 1) for i in picked)
                notes.append(
                    f"used code block {which} of {len(blocks)}"
                    if len(picked) == 1
                    else f"joined code blocks {which}"
                )
            notes += [n for b in chosen for n in b.notes]
            try:
                return _repair(_join(chosen), allowed_imports, notes)
            except (cst.ParserSyntaxError, *_UNPARSEABLE) as e:  # code ast accepts but libcst does not
                return _reject(f"the code could not be parsed for repair ({type(e).__name__}); simplify it")
    return _explain_failure([b for blocks, _ in sources for b in blocks], answer, thinking)


def _reject(message: str) -> Rejection:
    return Rejection("extract", message)


def _explain_failure(blocks: list[_Block], answer: str, thinking: str) -> Rejection:
    if any(b.truncated for b in blocks):
        return _reject(
            "the reply was cut off before the model was complete; reply with shorter, complete code"
        )
    broken = [b for b in blocks if b.tree is None and _MODELISH.search(b.code)]
    if broken:
        return _reject(
            f"the model code does not parse ({broken[-1].error}); reply with one complete ```python block"
        )
    if any(b.tree is not None for b in blocks):
        return _reject(f"the code defines no model: expected {CONTRACT}")
    if thinking and not answer.strip():
        return _reject(
            "the reply ends inside an unterminated <think> section (truncated?): no code after the thinking"
        )
    if _REFUSAL.search(answer):
        return _reject(f"the reply is a refusal with no Python code; write {CONTRACT} for the task")
    return _reject(
        f"no Python code found in the reply; answer with one ```python block that defines {CONTRACT}"
    )


def _drop_thinking(text: str, notes: list[str]) -> tuple[str, str]:
    """Split `text` into the answer and the body of an unterminated <think> section (or "")."""
    text, n = _THINK_SECTION.subn("", text)
    if n:
        notes.append("dropped <think> section")
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:  # the opening tag was part of the prompt template (DeepSeek-R1 style)
        text = text[closes[-1].end() :]
        notes.append("dropped the thinking before </think>")
    opened = _THINK_OPEN.search(text)
    if opened is None:
        return text, ""
    notes.append("dropped unterminated <think> section")
    return text[: opened.start()], text[opened.end() :]


def _split_fences(text: str) -> tuple[list[tuple[str, bool]], str]:
    """Python-ish fenced blocks as (code, closed) in order, and the text outside all fences."""
    blocks: list[tuple[str, bool]] = []
    outside: list[str] = []
    body: list[str] = []
    fence, tag = "", ""
    for line in text.split("\n"):
        if not fence:
            m = _FENCE.match(line)
            if m:
                fence, tag, body = m.group(1), re.sub(r"\W.*", "", m.group(2).lstrip("{.").lower()), []
                outside.append("")
            else:
                outside.append(line)
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            if tag in _PYTHON_TAGS:
                blocks.append(("\n".join(body), True))
            fence = ""
        else:
            body.append(line)
    if fence and tag in _PYTHON_TAGS:
        blocks.append(("\n".join(body), False))
    return blocks, "\n".join(outside)


def _prose_blocks(text: str) -> list[_Block]:
    """Runs of code-looking lines in unfenced text, each parsed as a block."""
    runs: list[list[str]] = [[]]
    for line in text.split("\n"):
        kind = _line_kind(line)
        if kind == "prose":
            runs.append([])
        elif kind == "code" or runs[-1]:
            runs[-1].append(line)
    blocks = []
    for run in runs:
        lines = textwrap.dedent("\n".join(run)).split("\n")
        while lines and (not lines[0].strip() or lines[0].startswith((" ", "\t"))):
            lines.pop(0)  # code cannot start inside an indented block
        if lines:
            blocks.append(_parse_block("\n".join(lines), closed=False))
    return blocks


def _line_kind(line: str) -> str:
    if not line.strip():
        return "blank"
    if line.startswith((" ", "\t")) or _BLOCK_OPENER.match(line) or _CODE_START.match(line):
        return "code"
    try:
        body = ast.parse(line).body
    except (SyntaxError, *_UNPARSEABLE):
        return "prose"
    bare = (
        len(body) == 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, (ast.Name, ast.Constant))
    )
    return "prose" if bare else "code"


def _parse_block(text: str, closed: bool) -> _Block:
    """Parse a block, fixing tab indentation and IPython magics; unclosed blocks lose trailing lines."""
    notes = []
    lines = text.split("\n")
    kept = [line for line in lines if not _MAGIC_LINE.match(line)]
    if len(kept) < len(lines):
        notes.append("removed IPython magic lines (!pip, %...)")
    code = textwrap.dedent("\n".join(kept)).strip("\n")
    tree, error, line = _try_parse(code)
    truncated = False
    if tree is None and "\t" in code:
        spaced = textwrap.dedent(re.sub(r"(?m)^[ \t]+", lambda m: m.group(0).expandtabs(4), code))
        tree, _, _ = _try_parse(spaced)
        if tree is not None:
            code = spaced
            notes.append("replaced tab indentation with spaces")
    if tree is None and not closed:
        lines = code.split("\n")
        for end in range(min(len(lines) - 1, line), 0, -1):
            tree, _, _ = _try_parse("\n".join(lines[:end]))
            if tree is not None:
                code, truncated = "\n".join(lines[:end]).rstrip(), True
                notes.append(
                    f"dropped {len(lines) - end} trailing line(s) that do not parse (truncated reply?)"
                )
                break
    return _Block(code, tree, error if tree is None else "", truncated, notes)


def _try_parse(code: str) -> tuple[ast.Module | None, str, int]:
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return None, f"line {e.lineno}: {e.msg}" if e.lineno else e.msg, e.lineno or 0
    except _UNPARSEABLE as e:
        return None, f"{type(e).__name__}: {e}", 0
    return (tree, "", 0) if tree.body else (None, "empty", 0)


def _pick(blocks: list[_Block]) -> list[int]:
    """Indexes of the block holding the model and of the blocks it needs, in reply order."""
    parsed = [i for i, b in enumerate(blocks) if b.tree is not None]
    roots = _root_classes([c for i in parsed for c in blocks[i].classes])
    for wanted in (
        lambda b: b.has_entry,
        lambda b: b.has_factory,
        lambda b: any(c.name in roots for c in b.classes),
        lambda b: b.has_sequential,
    ):
        matches = [i for i in parsed if wanted(blocks[i])]
        if matches:
            entry = matches[-1]  # the model's last version wins
            break
    else:
        return []
    chosen = {entry}
    needs, have = blocks[entry].needs, blocks[entry].defines
    while needs - have:
        name = min(needs - have)
        donors = [i for i in parsed if i not in chosen and name in blocks[i].defines]
        have.add(name)
        if donors:
            earlier = [i for i in donors if i < entry]
            donor = max(earlier) if earlier else min(donors)
            chosen.add(donor)
            needs |= blocks[donor].needs
            have |= blocks[donor].defines
    return sorted(chosen)


def _join(blocks: list[_Block]) -> str:
    """Concatenate blocks; a name defined by several keeps only its last definition."""
    if len(blocks) == 1:
        return blocks[0].code
    later: set[str] = set()
    parts = []
    for block in reversed(blocks):
        module = cst.parse_module(block.code)
        body = [s for s in module.body if not (_defined_name(s) and _defined_name(s) in later)]
        later |= block.defines
        parts.append(module.with_changes(body=body).code.strip("\n"))
    return "\n\n\n".join(reversed(parts)) + "\n"


def _defined_name(stmt: cst.CSTNode) -> str:
    return stmt.name.value if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)) else ""


def _repair(code: str, allowed: frozenset[str], notes: list[str]) -> Extracted | Rejection:
    """Give the code an entry point, drop what would run at import or is unused, add imports."""
    module = cst.parse_module(code)
    body = list(module.body)
    if not any(_defined_name(s) in ("build_model", "Model") for s in body):
        problem = _add_entry(body, ast.parse(code), notes)
        if problem is not None:
            return problem
    body = _prune(body, notes)
    body = _drop_unused_imports(body, allowed, notes)
    code = module.with_changes(body=body).code
    for line in missing_imports(code, allowed):
        notes.append(f"added {line}")
    return Extracted(add_missing_imports(code, allowed).rstrip("\n") + "\n", tuple(notes))


def _add_entry(body: list[cst.BaseStatement], tree: ast.Module, notes: list[str]) -> Rejection | None:
    """Add `build_model` for a factory function, the root nn.Module class or a top-level Sequential.

    A misnamed class keeps its name (renaming would miss `super(Net, self)` and other references);
    the added build_model constructs it with the contract's values for the parameters it recognises.
    """
    funcs = {s.name: s for s in tree.body if isinstance(s, ast.FunctionDef)}
    classes = {s.name: s for s in tree.body if isinstance(s, ast.ClassDef)}
    factories = [f for f in funcs if _FACTORY.match(f)]
    roots = _root_classes(list(classes.values())) or _model_classes(list(classes.values()))
    if factories or roots:
        target = funcs[factories[-1]] if factories else classes[[c for c in classes if c in roots][-1]]
        call = _constructor_call(target, classes)
        if isinstance(call, Rejection):
            return call
        after = next(i for i, s in enumerate(body) if _defined_name(s) == target.name)
        entry = cst.parse_statement(_BUILD_MODEL.format(call=call)).with_changes(leading_lines=_TWO_BLANKS)
        body.insert(after + 1, entry)
        notes.append(f"added build_model() that returns {call}")
        return None
    index = next((i for i, s in enumerate(body) if _is_sequential_line(s)), None)
    if index is None:
        return _reject(f"the code defines no model: expected {CONTRACT}")
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
        return _reject(
            f"`{target.name}` needs {', '.join(missing)}, which the contract does not provide; "
            f"define build_model(input_shape, num_classes) that constructs the model"
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
        if _defined_name(s) in ("build_model", "Model")
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
        if i in reached or _is_import_line(s) or (allowed_top_level(s) and not _defined_name(s)):
            kept.append(s)
        elif _defined_name(s):
            unused.append(_defined_name(s))
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
    if _defined_name(stmt):
        return {_defined_name(stmt)}
    if not isinstance(stmt, cst.SimpleStatementLine):
        return set()
    bound = set()
    for s in stmt.body:
        targets = [t.target for t in s.targets] if isinstance(s, cst.Assign) else []
        targets += [s.target] if isinstance(s, (cst.AnnAssign, cst.AugAssign)) else []
        bound |= {t.value for t in targets if isinstance(t, cst.Name)}
    return bound


def _dotted(expr: ast.expr) -> str:
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return f"{_dotted(expr.value)}.{expr.attr}"
    return ""


def _model_classes(classes: list[ast.ClassDef]) -> list[str]:
    """Complete nn.Modules: subclasses of Module (directly or through a class here) with a forward."""
    complete: dict[str, bool] = {}
    changed = True
    while changed:
        changed = False
        for c in classes:
            bases = [_dotted(b) for b in c.bases]
            if c.name in complete or not any(
                b.split(".")[-1] in _MODULE_BASES or b in complete for b in bases
            ):
                continue
            has_forward = any(isinstance(s, ast.FunctionDef) and s.name == "forward" for s in c.body)
            inherited = any(b.endswith("Sequential") or complete.get(b, False) for b in bases)
            complete[c.name] = has_forward or inherited
            changed = True
    return [name for name, ok in complete.items() if ok]


def _root_classes(classes: list[ast.ClassDef]) -> list[str]:
    """Model classes that no other class uses as a part: the model, not its blocks."""
    used: set[str] = set()
    for c in classes:
        used |= {n.id for n in ast.walk(c) if isinstance(n, ast.Name)} - {c.name}
    return [name for name in _model_classes(classes) if name not in used]


def _is_sequential_line(stmt: cst.CSTNode) -> bool:
    """`name = nn.Sequential(...)` as a libcst statement (the same test as `_is_sequential_assign`)."""
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
        return False
    s = stmt.body[0]
    return (
        isinstance(s, cst.Assign)
        and len(s.targets) == 1
        and isinstance(s.targets[0].target, cst.Name)
        and isinstance(s.value, cst.Call)
        and (get_full_name_for_node(s.value.func) or "").split(".")[-1] == "Sequential"
    )


def _is_sequential_assign(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and isinstance(stmt.value, ast.Call)
        and _dotted(stmt.value.func).split(".")[-1] == "Sequential"
    )


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            names |= {a.asname or a.name.split(".")[0] for a in stmt.names}
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names
