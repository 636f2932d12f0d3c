"""The child of candidate/bounded.py: parses untrusted text (candidate code, model replies) under limits.

Started as ``python -c "from llmnas.candidate.parse_child import serve; serve()"`` by the driver. It
imports the parsers, caps its own address space and core dumps, then answers one JSON line per request
(a JSON line in, plain strings out), with a CPU-time limit renewed per request. It never executes the
text it reads. A MemoryError ends it after its answer; the driver starts a fresh one when needed.
"""

from __future__ import annotations

import ast
import json
import os
import resource
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from llmnas.candidate import checks, extract
from llmnas.candidate.bounded import MEMORY_HEADROOM_BYTES, PROMPT_STRING_CHARS, READY, TIME_LIMIT_S
from llmnas.candidate.checks import ast_is_main_guard, is_string_statement


def serve() -> None:
    """The child's loop: limits, a ready line, then one answer line per request line."""
    ops: dict[str, Callable[..., dict]] = {
        "check": _check_op,
        "extract": _extract_op,
        "minimise": lambda code: {"code": minimised(code)},
    }
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + MEMORY_HEADROOM_BYTES
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    out = os.fdopen(os.dup(1), "wb")  # answers only: anything a library prints goes to stderr (discarded)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    out.write(READY)
    out.flush()
    for line in sys.stdin.buffer:
        fatal = False
        try:
            request = json.loads(line)
            _limit_cpu(float(request.get("seconds", TIME_LIMIT_S)), cpu_hard)
            reply = {"ok": True, "result": ops[request["op"]](**request["args"])}
        except MemoryError:
            reply, fatal = {"ok": False, "error": "ran out of memory", "fatal": True}, True
        except RecursionError:
            reply = {"ok": False, "error": "nested too deeply for the parser"}
        except Exception as e:  # a parser bug on odd text is a refusal, not a crash
            reply = {"ok": False, "error": f"failed in the parser ({type(e).__name__})"}
        try:
            text = json.dumps(reply)
        except (MemoryError, RecursionError, ValueError):
            text, fatal = json.dumps({"ok": False, "error": "unencodable answer", "fatal": True}), True
        out.write(text.encode("ascii") + b"\n")
        out.flush()
        if fatal:
            return


def _limit_cpu(seconds: float, hard: int) -> None:
    """A backstop should the driver not kill it: CPU time for this request, twice the driver's wait."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime + 2 * seconds) + 1
    if hard == resource.RLIM_INFINITY or soft <= hard:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _address_space() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 1 << 30


def _check_op(code: str, allowed: list[str]) -> dict:
    verdict = checks.check_unbounded(code, frozenset(allowed))
    if isinstance(verdict, checks.Rejection):
        return {"kind": "rejection", "stage": verdict.stage, "message": verdict.message}
    return {"kind": "checked", "code": verdict.code}


def _extract_op(reply: str, allowed: list[str]) -> dict:
    found = extract.extract_code(reply, frozenset(allowed))
    if isinstance(found, checks.Rejection):
        return {"kind": "rejection", "stage": found.stage, "message": found.message}
    return {"kind": "extracted", "code": found.code, "notes": list(found.notes)}


def minimised(code: str) -> str:
    """What ``bounded.minimise`` computes (run it in the child): parse with ast and unparse, which drops every
    comment by construction; docstrings, bare string statements and ``__main__`` blocks removed; string
    constants over PROMPT_STRING_CHARS characters or of three words or more replaced by a placeholder
    that says how long they were. Raises SyntaxError (and friends) for code that does not parse."""
    tree = ast.parse(code)
    tree.body = [s for s in tree.body if not ast_is_main_guard(s)]
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.stmt):
            node.body = [s for s in body if not is_string_statement(s)] or [ast.Pass()]
    tree = _Strings().visit(tree)
    return ast.unparse(tree).strip() + "\n"


def _wordy(text: str | bytes) -> bool:
    return len(text) > PROMPT_STRING_CHARS or len(text.split()) >= 3


def _placeholder(n: int, like: ast.AST) -> ast.AST:
    return ast.copy_location(ast.Constant(f"<{n} characters removed>"), like)


class _Strings(ast.NodeTransformer):
    """Long or wordy string constants (f-strings by their literal text) become a placeholder."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if isinstance(node.value, (str, bytes)) and _wordy(node.value):
            return _placeholder(len(node.value), node)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        text = "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
        if _wordy(text):
            return _placeholder(len(text), node)
        return self.generic_visit(node)
