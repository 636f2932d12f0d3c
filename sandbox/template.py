"""The warm template: one process per driver (and per environment) that imports torch and runs the
warm-up once, then forks every sandbox zygote the driver asks for, so a pool's zygote starts in a few
milliseconds instead of the seconds an interpreter takes to import torch (issue 31: 134 zygote start-ups
were 481 of the test suite's ~1,090 CPU-seconds).

The driver holds the other end of a unix SEQPACKET socket (``python -m sandbox.template FD``):
  in:  {"env": {...}, "cwd": PATH, "unshare": ["--net", "--pid", ...]} with two descriptors, the
       zygote's stdin (read end) and stdout (write end)
  out: {"pid": INT} with a pidfd of the forked process, or {"error": TEXT}
Each fork becomes what ``unshare --net --pid --fork --mount-proc --kill-child [...] python -m
sandbox.zygote`` made before: the forked child sets up its own session, working folder, environment and
namespaces, forks once more (the new pid namespace's first process, killed with its parent) and serves as
the zygote (sandbox/zygote.py). The template never runs candidate code, keeps no descriptor of a zygote,
and exits when the driver's end of the socket closes, however the driver died.
"""

from __future__ import annotations

import contextlib
import functools
import json
import operator
import os
import select
import signal
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable

from sandbox import libc

# unshare(1)'s options as the driver's probe chose them (llmnas/execute/local.py), as namespace flags.
FLAGS = {
    "--net": libc.CLONE_NEWNET,
    "--pid": libc.CLONE_NEWPID,
    "--mount-proc": libc.CLONE_NEWNS,
    "--ipc": libc.CLONE_NEWIPC,
    "--uts": libc.CLONE_NEWUTS,
    "--map-root-user": libc.CLONE_NEWUSER,
}
_PR_SET_PDEATHSIG = 1
_MESSAGE = 1 << 16


def _close_inherited() -> None:
    """Close every descriptor above stderr (the template's socket above all): a zygote starts with what
    a freshly started interpreter would have."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2:
            with contextlib.suppress(OSError):
                os.close(int(name))


def _map_root(uid: int, gid: int) -> None:
    """Map root inside the new user namespace to the user outside (``unshare --map-root-user``)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def enter_namespaces(options: list[str]) -> None:
    """Unshare the namespaces ``options`` name, then fork: the parent waits and exits as its child did
    (``--fork``); the child returns as the first process of the new pid namespace, killed when its
    parent dies (``--kill-child``), with its own /proc (``--mount-proc``)."""
    unknown = set(options) - set(FLAGS) - {"--fork", "--kill-child"}
    if unknown:
        raise ValueError(f"unknown namespace options {sorted(unknown)}")
    flags = functools.reduce(operator.or_, (FLAGS[o] for o in options if o in FLAGS), 0)
    if not flags:
        return
    uid, gid = os.getuid(), os.getgid()
    libc.unshare(flags)
    if flags & libc.CLONE_NEWUSER:
        _map_root(uid, gid)
    if flags & libc.CLONE_NEWNS:  # never on the host's own mounts
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    parent = os.pidfd_open(os.getpid())  # getppid() reads 0 across the pid namespace's border
    pid = os.fork()
    if pid:
        _wait_for(pid)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([parent], [], [], 0)[0]:
        os._exit(1)  # the parent died before the line above could tie us to it
    os.close(parent)
    if flags & libc.CLONE_NEWPID and flags & libc.CLONE_NEWNS:
        libc.mount("proc", "/proc", "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)


def _wait_for(zygote: int) -> None:
    """The parent's part: wait for the zygote and exit as it did. SIGTERM (the driver's stop) kills it
    with SIGKILL; as the first process of its pid namespace it is reaped only once every other process
    there is gone, so when this process has ended, so have all the zygote's candidates."""
    os.close(0)
    os.close(1)  # the driver reads end-of-file when the zygote goes, not when this process does
    signal.signal(signal.SIGTERM, lambda *_: os.kill(zygote, signal.SIGKILL))
    _, status = os.waitpid(zygote, 0)
    os._exit(os.waitstatus_to_exitcode(status) % 256)


def _become_zygote(request: dict, stdin: int, stdout: int, serve: Callable[[], None]) -> None:
    """In the forked child: the zygote's descriptors, session, folder, environment and namespaces."""
    os.dup2(stdin, 0)
    os.dup2(stdout, 1)
    _close_inherited()
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # TMPDIR is the zygote's now
    enter_namespaces(request["unshare"])
    serve()


def _fork(sock: socket.socket, request: dict, fds: list[int], serve: Callable[[], None]) -> None:
    """Fork one zygote and send the driver its pidfd (taken before the child can be reaped)."""
    if len(fds) != 2:
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"error": f"expected 2 descriptors, got {len(fds)}"}).encode())
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _become_zygote(request, *fds, serve)
        except BaseException:  # noqa: BLE001 - the driver reads why on the zygote's stdout
            code = 1
            with contextlib.suppress(OSError):
                os.write(1, (json.dumps({"error": traceback.format_exc(limit=3)}) + "\n").encode())
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    try:
        socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [pidfd])
    finally:
        os.close(pidfd)


def _reap() -> None:
    """Collect the forked processes that have ended (their pidfds stay valid with the driver)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _import_onnxruntime() -> None:
    """Import onnxruntime with no cache folder it can create: on import it maps a telemetry database
    there shared and writable (``XDG_CACHE_HOME``, else ``~/.cache``), which every zygote and candidate
    forked from here would inherit, a channel between them. Its warning that it keeps the id in memory
    instead is dropped."""
    os.environ["XDG_CACHE_HOME"] = "/proc/llmnas-no-cache"
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import onnxruntime  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        del os.environ["XDG_CACHE_HOME"]


def main() -> None:
    """Serve the driver on the socket whose descriptor is the first argument. HOME and TMPDIR are a pool
    folder the driver holds (execute/template.py), removed by it or, if it dies, by the next sweep."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    sock = socket.socket(fileno=int(sys.argv[1]))
    _import_onnxruntime()
    from sandbox import worker, zygote

    worker.preload()
    sock.send(json.dumps({"ready": os.getpid()}).encode())
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, _MESSAGE, 2)
        except OSError:
            break
        if not data:
            break  # the driver is gone
        _reap()
        _fork(sock, json.loads(data), fds, zygote.serve)


if __name__ == "__main__":
    main()
