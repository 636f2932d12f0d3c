"""Find the candidate code in a language model's reply, then hand it to `repair`.

Handles fenced blocks (``` and ~~~, any or no language tag), unfenced code among prose, several
blocks (the model's block plus the blocks it depends on, joined in order), <think> sections and
truncated replies. `repair` (repair.py) fixes the rest; every fix is recorded in `Extracted.notes`.
Pure: never runs code.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from dataclasses import dataclass, field

import libcst as cst

from llmnas.candidate.checks import CONTRACT, DEFAULT_ALLOWED_IMPORTS, Rejection
from llmnas.candidate.names import STANDARD_IMPORTS
from llmnas.candidate.repair import (
    FACTORY,
    defined_name,
    is_sequential_assign,
    repair,
    root_classes,
    unbound_names,
)


@dataclass(frozen=True)
class Extracted:
    """Code ready for `checks.check`, and what was repaired to get it."""

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
_BUILTINS = frozenset(dir(builtins))
_UNPARSEABLE = (ValueError, RecursionError, MemoryError)  # NUL bytes, deep nesting


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
        return unbound_names(self.tree) - _BUILTINS - set(STANDARD_IMPORTS) if self.tree else set()

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
        return any(FACTORY.match(f) for f in self.functions)

    @property
    def has_sequential(self) -> bool:
        return self.tree is not None and any(is_sequential_assign(s) for s in self.tree.body)


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
                code = repair(_join(chosen), allowed_imports, notes)
            except (cst.ParserSyntaxError, *_UNPARSEABLE) as e:  # code ast accepts but libcst does not
                return _reject(f"the code could not be parsed for repair ({type(e).__name__}); simplify it")
            return code if isinstance(code, Rejection) else Extracted(code, tuple(notes))
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
    roots = root_classes([c for i in parsed for c in blocks[i].classes])
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
        body = [s for s in module.body if not (defined_name(s) and defined_name(s) in later)]
        later |= block.defines
        parts.append(module.with_changes(body=body).code.strip("\n"))
    return "\n\n\n".join(reversed(parts)) + "\n"


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
