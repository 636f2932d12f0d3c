"""The driver's end of the warm templates (sandbox/template.py) and of the zygotes they fork.

One template per environment (what differs between pools of one driver: the devices, the modules to
preload) lives as long as this process; every pool slot's zygote is forked from it. The template is
started with the zygote's scrubbed environment, so no key reaches it either.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

from llmnas.execute import stale
from sandbox.cleanup import remove_tree

# What each zygote sets for itself after the fork; the rest of its environment picks the template.
PER_ZYGOTE = frozenset({"HOME", "TMPDIR", "LLMNAS_PRIVATE_TMP", "LLMNAS_POOL_ROOT"})
START_TIMEOUT_S = 300.0  # a template imports torch and runs one tiny evaluation: seconds, minutes when busy
_MESSAGE = 1 << 16
_lock = threading.Lock()
_templates: dict[tuple, _Template] = {}


class Zygote:
    """A forked zygote: its request pipe, its reply pipe, and a pidfd of the process that holds it (the
    zygote itself, or the ``unshare --fork``-like parent whose death kills it)."""

    def __init__(self, pidfd: int, stdin: IO[str], stdout: IO[str]):
        self.pidfd, self.stdin, self.stdout = pidfd, stdin, stdout
        self._killed = threading.Lock()

    def running(self) -> bool:
        return not self._killed.locked() and not select.select([self.pidfd], [], [], 0)[0]

    def kill(self, wait_s: float = 10.0) -> None:
        """Stop it and wait until it has ended with every candidate it forked (sandbox/template.py,
        ``_wait_for``): SIGTERM, then SIGKILL (its pid namespace goes with it) if that takes over
        ``wait_s``. Release its descriptors. Once: a pool's close and the thread that waited on the
        zygote may both get here."""
        if not self._killed.acquire(blocking=False):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.pidfd, sig)
            if select.select([self.pidfd], [], [], wait_s)[0]:
                break
        for f in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                f.close()
        os.close(self.pidfd)


class _Template:
    def __init__(self, env: dict[str, str], offline: list[str]):
        """Start one under ``offline`` (execute/local.offline_prefix). Its home is a pool folder of ours,
        swept with the others if this process dies."""
        self.home = Path(tempfile.mkdtemp(prefix=stale.PREFIX))
        self.owner = stale.claim(self.home, range(0))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                # -s -P: neither the user's site-packages nor the working folder join the import path
                [*offline, sys.executable, "-s", "-P", "-m", "sandbox.template", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env={**env, "HOME": str(self.home), "TMPDIR": str(self.home)},
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except BaseException:
            ours.close()
            self._remove_home()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(START_TIMEOUT_S)
        try:
            ready = self.sock.recv(_MESSAGE)
        except OSError:
            ready = b""
        if not ready.startswith(b'{"ready"'):
            self.close()
            raise RuntimeError(
                f"the sandbox template failed to start (answered {ready!r}; its error is above)"
            )

    def running(self) -> bool:
        return self.proc.poll() is None

    def fork(self, env: dict[str, str], cwd: Path, unshare: list[str]) -> Zygote:
        request = json.dumps({"env": env, "cwd": str(cwd), "unshare": unshare}).encode()
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        try:
            socket.send_fds(self.sock, [request], [stdin_r, stdout_w])
            data, fds, _, _ = socket.recv_fds(self.sock, _MESSAGE, 1)
        except BaseException:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise
        finally:
            os.close(stdin_r)
            os.close(stdout_w)
        reply = json.loads(data or b"{}")
        if not fds:
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise RuntimeError(
                f"the sandbox template could not fork a zygote: {reply.get('error', 'no reply')}"
            )
        return Zygote(
            fds[0], open(stdin_w, "w", buffering=1, encoding="utf-8"), open(stdout_r, encoding="utf-8")
        )

    def close(self) -> None:
        self.sock.close()  # the template exits at end-of-file
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._remove_home()

    def _remove_home(self) -> None:
        remove_tree(self.home)
        stale.release(self.owner)


def fork_zygote(env: dict[str, str], cwd: Path, unshare: list[str], offline: list[str]) -> Zygote:
    """A zygote with the scrubbed environment ``env``, working in ``cwd``, in the namespaces that
    ``unshare`` names (unshare(1)'s options), forked from this process's template for ``env``, started
    if need be under the command prefix ``offline``."""
    shared = {k: v for k, v in env.items() if k not in PER_ZYGOTE}
    key = tuple(sorted(shared.items()))
    with _lock:
        template = _templates.get(key)
        if template is not None and not template.running():
            template.close()
            template = None
        if template is None:
            template = _templates[key] = _Template(shared, offline)
        try:
            return template.fork(env, cwd, unshare)
        except BaseException:  # a reply may still come: the socket is out of step, start afresh
            del _templates[key]
            template.close()
            raise


@atexit.register
def _close_all() -> None:
    """At this process's exit: the templates end and their homes go (after a kill, the next sweep)."""
    with _lock:
        for template in _templates.values():
            template.close()
        _templates.clear()
