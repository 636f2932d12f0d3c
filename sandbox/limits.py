"""Confine the current process before candidate code runs: session, rlimits, uid, seccomp, audit hook.

The operating-system layers (own session, rlimits, an unprivileged uid, the seccomp filter, the
namespaces and cgroup of its cell, a scrubbed environment) are what hold. rlimits count one process
each (RLIMIT_NPROC: one uid), so the cell's cgroup or the zygote's watcher bounds the candidate as a
whole. The audit hook is a second fence that turns many escape attempts into clear errors; it does not
stop native code.
"""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path

from sandbox import seccomp
from sandbox.protocol import Limits, scrubbed_env

_REFUSED_EVENTS = (
    "socket.",
    "subprocess.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "pty.",
    "ctypes.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
    "os.setuid",
    "os.setgid",
    "sys.remote_exec",
)
_PATH_EVENTS = {
    "os.remove",
    "os.rmdir",
    "os.mkdir",
    "os.rename",
    "os.chmod",
    "os.chown",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.utime",
    "shutil.rmtree",
    "shutil.copyfile",
    "shutil.move",
}
_SECRET_READS = ("/environ", "/mem", "/proc/1/", "/root", "/home")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def apply_rlimits(limits: Limits, cuda: bool = False) -> None:
    """Address space, CPU seconds, file size, processes and open files, no core dumps. On CUDA the
    address-space limit is left out: the driver maps far more virtual memory than it uses."""
    vm_now = _vm_size_bytes()
    mb = 1024 * 1024
    for res, value in (
        *(() if cuda else ((resource.RLIMIT_AS, vm_now + limits.memory_mb * mb),)),
        (resource.RLIMIT_CPU, limits.cpu_s),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb),
        (resource.RLIMIT_NPROC, limits.nproc),
        (resource.RLIMIT_NOFILE, limits.nofile),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, (value, value))


def drop_privileges(uid: int | None) -> None:
    """As root, become an unprivileged uid of our own: root ignores RLIMIT_NPROC and file modes."""
    if uid is None or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def install_audit_hook(workdir: str) -> None:
    """Refuse sockets, processes, signals, native loading and writes outside ``workdir``."""
    root = os.path.realpath(workdir) + os.sep
    # Everything the hook uses is bound here, so rebinding module globals later changes nothing.
    refused, path_events, secrets, write_flags = (
        _REFUSED_EVENTS,
        frozenset(_PATH_EVENTS),
        _SECRET_READS,
        _WRITE_FLAGS,
    )
    realpath, fsdecode, sep = os.path.realpath, os.fsdecode, os.sep

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return True
        if isinstance(path, bytes):
            path = fsdecode(path)
        if not isinstance(path, str):
            return False
        return (realpath(path) + sep).startswith(root)

    def hook(event: str, args: tuple) -> None:
        if event.startswith(refused):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args:
            path, mode, flags = (list(args) + [None, None])[:3]
            writing = bool(mode and any(c in str(mode) for c in "wax+")) or bool(
                isinstance(flags, int) and flags & write_flags
            )
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the candidate folder")
            text = fsdecode(path) if isinstance(path, bytes) else path
            if isinstance(text, str) and not inside(text) and any(s in text for s in secrets):
                raise PermissionError(f"sandbox: reading {path!r} is not allowed")
        elif event in path_events and not all(inside(a) for a in args[:2] if isinstance(a, str | bytes)):
            raise PermissionError(f"sandbox: {event} outside the candidate folder")

    sys.addaudithook(hook)


def confine(workdir: str, limits: Limits, uid: int | None, threads: int, cuda: bool = False) -> None:
    """Everything above, in the order that works: session, folder, env, limits, uid, seccomp, hook (the
    filter needs ctypes, which the hook refuses). Where the kernel has no seccomp, the rest holds."""
    if os.getpgrp() != os.getpid():
        os.setsid()
    os.chdir(workdir)
    env = scrubbed_env(threads, workdir)  # built before the clear: it reads PATH and the slot's GPU
    os.environ.clear()
    os.environ.update(env)
    apply_rlimits(limits, cuda)
    drop_privileges(uid)
    if seccomp.supported() is None:
        seccomp.install()
    if limits.audit_hook:
        install_audit_hook(workdir)


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory of this process (``VmRSS`` now or ``VmHWM`` peak), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0
