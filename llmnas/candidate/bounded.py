"""Untrusted text parsed under limits: a size cap before any parsing, then a limited child process.

Candidate code and model replies are hostile text (docs/architecture.md, "The trust boundary"). Parsing
them is not running them, but libcst and ast still cost time and memory that grow with the text in ways
a writer can choose: 60 KB of nested unary minus takes libcst 25 s and 9 GB. So the driver parses such
text only through this module:

- ``too_big`` refuses text over the size cap before anything reads its structure;
- every parse (the static checks, extraction and repair of a reply, the minimised code shown in prompts)
  runs in one persistent child process that speaks JSON lines on its stdin and stdout. The child caps
  its address space (``RLIMIT_AS``) and CPU time (``RLIMIT_CPU``); the driver kills it when a request
  takes longer than ``TIME_LIMIT_S`` and starts a fresh one at the next request. A child that dies, runs
  out of memory or time is a one-line reason, never an exception in the driver.

The child never executes the text; it only parses it. What comes back is JSON of plain strings, checked
field by field here (the candidate id is recomputed on this side). The child starts on first use (its
imports take a few tenths of a second); each request after that costs well under a millisecond more than
the parse itself (bench/static_checks.py).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from llmnas.errors import RunFailed

# The size cap: the default of the ``max_bytes`` parameters (checks.check, LLMProposer).
MAX_CANDIDATE_BYTES = 200 * 1024
# A reply holds prose and thinking around the code: it may be this many times the cap.
REPLY_FACTOR = 4
# Per request: wall time the driver waits, and the child's CPU-time backstop.
TIME_LIMIT_S = 3.0
# Address space the child may add to what it has after its imports.
MEMORY_HEADROOM_BYTES = 768 * 1024 * 1024
# How long a fresh child may take to import libcst (a loaded machine is slow; parsing is not timed here).
START_TIMEOUT_S = 60.0
# A long-lived child is replaced now and then so that fragmentation cannot accumulate.
RECYCLE_AFTER = 2000
# Error text and unparseable text shown to a model are cut to these many characters.
MESSAGE_CHARS = 600
RAW_TEXT_CHARS = 8000
# Strings longer than this, or of three words or more, are dropped from code shown to a model.
PROMPT_STRING_CHARS = 32

READY = b'{"ready": true}\n'


class Failed(Exception):
    """The child could not answer: it took too long, ran out of memory, or died. ``str`` is one line."""


def kb(n: int) -> str:
    return f"{max(n, 1) / 1024:,.0f} KB" if n >= 1024 else f"{n:,} bytes"


def too_big(text: str, max_bytes: int, what: str = "candidate") -> str | None:
    """The one-line refusal for ``text`` over ``max_bytes`` (UTF-8), or None; reads no structure."""
    n = len(text)
    if n <= max_bytes:  # characters are at most bytes: count bytes only where they may be over
        n = len(text.encode("utf-8", "surrogatepass"))
        if n <= max_bytes:
            return None
    return f"{what} is {kb(n)}; the limit is {kb(max_bytes)}"


# ---------------------------------------------------------------------------------------------------
# The driver's side


class _Worker:
    """One child process; requests are serialised by a lock (the child answers one at a time)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._pid = 0  # the driver process that started it (a fork must not share the pipes)
        self._served = 0

    def request(self, op: str, args: dict, timeout: float) -> dict:
        line = (json.dumps({"op": op, "args": args, "seconds": timeout}) + "\n").encode("ascii")
        with self._lock:
            for attempt in (0, 1):
                proc = self._ensure()
                try:
                    proc.stdin.write(line)  # type: ignore[union-attr]
                    proc.stdin.flush()  # type: ignore[union-attr]
                except OSError:  # it died while idle (a broken pipe): start another, once
                    self._stop()
                    if attempt:
                        raise RunFailed("the process that parses candidate code stops at once") from None
                    continue
                return self._answer(proc, timeout, len(line))
        raise AssertionError("unreachable")

    def _answer(self, proc: subprocess.Popen, timeout: float, asked: int) -> dict:
        status, data = _read_line(proc, time.monotonic() + timeout, 4 * asked + (1 << 20))
        if status != "line":
            raise Failed(self._death(proc, timeout, status))
        self._served += 1
        try:
            reply = json.loads(data)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            self._stop()
            raise Failed("the parsing process answered nonsense")
        if reply.get("fatal") or self._served >= RECYCLE_AFTER:
            self._stop()
        if not reply["ok"]:
            raise Failed(_one_line(str(reply.get("error", "error"))))
        result = reply.get("result")
        if not isinstance(result, dict):
            raise Failed("the parsing process answered nonsense")
        return result

    def _death(self, proc: subprocess.Popen, timeout: float, status: str) -> str:
        if status == "eof":
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        code = proc.poll()
        self._stop()
        if status == "timeout":
            return f"took more than {timeout:g} s"
        if status == "overflow":
            return "gave an answer longer than allowed"
        if code == -signal.SIGXCPU:
            return "used more than its CPU time"
        return (
            f"ran out of memory (more than {MEMORY_HEADROOM_BYTES >> 20} MiB) or crashed the parser"
            f" (exit status {code})"
        )

    def _ensure(self) -> subprocess.Popen:
        if self._proc is not None and self._pid == os.getpid() and self._proc.poll() is None:
            return self._proc
        if self._pid != os.getpid():
            self._proc = None  # inherited through a fork: leave the parent's child alone
        self._stop()
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", "from llmnas.candidate.parse_child import serve; serve()"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
                cwd=root,
                close_fds=True,
                start_new_session=True,  # Ctrl-C in a terminal is the driver's to handle, not the child's
            )
        except OSError as e:
            raise RunFailed(f"cannot start the process that parses candidate code: {e}") from e
        self._proc, self._pid, self._served = proc, os.getpid(), 0
        if _read_line(proc, time.monotonic() + START_TIMEOUT_S, 1024) != ("line", READY):
            self._stop()
            raise RunFailed(
                f"the process that parses candidate code did not start within {START_TIMEOUT_S:g} s"
            )
        return proc

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or self._pid != os.getpid():
            return
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def close(self) -> None:
        with self._lock:
            self._stop()


def _read_line(proc: subprocess.Popen, deadline: float, limit: int) -> tuple[str, bytes]:
    """("line", bytes up to the first newline), or ("timeout" | "eof" | "overflow", what came)."""
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    chunks: list[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        ready = select.select([fd], [], [], left)[0] if left > 0 else []
        if not ready:
            return "timeout", b"".join(chunks)
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return "eof", b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if chunk.endswith(b"\n"):  # one request, one line: the child writes nothing after it
            return "line", b"".join(chunks)
        if size > limit:
            return "overflow", b""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


_WORKER = _Worker()
atexit.register(_WORKER.close)


def call(op: str, timeout: float = TIME_LIMIT_S, **args: object) -> dict:
    """Run ``op`` on plain-data ``args`` in the child; its plain-data result, or Failed."""
    return _WORKER.request(op, args, timeout)


def _text(result: dict, key: str) -> str:
    value = result.get(key)
    if not isinstance(value, str):
        raise Failed("the parsing process answered nonsense")
    return value


def check(code: str, allowed: frozenset[str], timeout: float = TIME_LIMIT_S) -> dict:
    """The static checks' verdict as data: {"kind": "checked", "code"} or {"kind": "rejection", ...}."""
    result = call("check", timeout, code=code, allowed=sorted(allowed))
    kind = result.get("kind")
    if kind == "checked":
        return {"kind": kind, "code": _text(result, "code")}
    if kind == "rejection":
        return {"kind": kind, "stage": _text(result, "stage"), "message": _text(result, "message")}
    raise Failed("the parsing process answered nonsense")


def extract(reply: str, allowed: frozenset[str], timeout: float = TIME_LIMIT_S) -> dict:
    """``extract.extract_code`` in the child, as data: {"kind": "extracted", "code", "notes"} or a rejection."""
    result = call("extract", timeout, reply=reply, allowed=sorted(allowed))
    kind = result.get("kind")
    if kind == "extracted":
        notes = result.get("notes")
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise Failed("the parsing process answered nonsense")
        return {"kind": kind, "code": _text(result, "code"), "notes": notes}
    if kind == "rejection":
        return {"kind": kind, "stage": _text(result, "stage"), "message": _text(result, "message")}
    raise Failed("the parsing process answered nonsense")


def minimise(code: str, max_bytes: int = MAX_CANDIDATE_BYTES, timeout: float = TIME_LIMIT_S) -> str | None:
    """``code`` as shown to a model: no comments, docstrings, ``__main__`` blocks, long or wordy strings;
    None when it is over the cap, does not parse, or the child fails."""
    if too_big(code, max_bytes):
        return None
    try:
        result = call("minimise", timeout, code=code)
    except Failed:
        return None
    value = result.get("code")
    return value if isinstance(value, str) else None
