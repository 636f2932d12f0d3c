"""A seccomp filter installed in each candidate process right before its code runs.

It refuses (EPERM) the system calls a model evaluation never needs and an escape would: every
socket() family but IPv4/IPv6 inside a network namespace (so no AF_UNIX: pathname sockets are not
covered by the network namespace; no AF_VSOCK, AF_NETLINK, AF_PACKET, AF_ALG...), namespace creation
(unshare, setns, clone with namespace flags), mounts, ptrace and process_vm_*, keyrings, bpf,
perf_event_open, userfaultfd, io_uring, module and kexec loading, open_by_handle_at. clone3 answers
ENOSYS (its flags sit in memory a filter cannot read), so libc falls back to clone. A syscall from
another ABI (i386, x32) kills the process. ``socketpair`` stays allowed: it reaches nothing.

What it does NOT stop: anything done with the allowed calls (reading world-readable files, burning
CPU, filling memory: the rlimits, the cgroup, the uid and the mount view handle those), and kernel
bugs in the calls that remain. Written as a small BPF program here rather than through libseccomp's
Python bindings: the ones on PyPI are unmaintained (pyseccomp 0.1.2, 2021) or brand new.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import socket
import struct
from pathlib import Path

from sandbox import libc

SECCOMP_MODE_FILTER = 2
RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000
X32_SYSCALL_BIT = 0x40000000

# name: (x86_64, aarch64) numbers, from asm/unistd_64.h and asm-generic/unistd.h; None: no such call.
SYSCALLS: dict[str, tuple[int, int | None]] = {
    "socket": (41, 198), "clone": (56, 220), "clone3": (435, 435),
    "unshare": (272, 97), "setns": (308, 268), "mount": (165, 40), "umount2": (166, 39),
    "pivot_root": (155, 41), "chroot": (161, 51), "ptrace": (101, 117), "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271), "keyctl": (250, 219), "add_key": (248, 217),
    "request_key": (249, 218), "bpf": (321, 280), "perf_event_open": (298, 241),
    "userfaultfd": (323, 282), "kexec_load": (246, 104), "kexec_file_load": (320, 294),
    "init_module": (175, 105), "finit_module": (313, 273), "delete_module": (176, 106),
    "open_by_handle_at": (304, 265), "name_to_handle_at": (303, 264), "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426), "io_uring_register": (427, 427), "open_tree": (428, 428),
    "move_mount": (429, 429), "fsopen": (430, 430), "fsconfig": (431, 431), "fsmount": (432, 432),
    "fspick": (433, 433), "mount_setattr": (442, 442), "pidfd_getfd": (438, 438), "reboot": (169, 142),
    "swapon": (167, 224), "swapoff": (168, 225), "acct": (163, 89), "quotactl": (179, 60),
    "lookup_dcookie": (212, 18), "syslog": (103, 116), "sethostname": (170, 161),
    "setdomainname": (171, 162), "kcmp": (312, 272), "fanotify_init": (300, 262),
    "iopl": (172, None), "ioperm": (173, None),
}  # fmt: skip
DENIED = tuple(name for name in SYSCALLS if name not in ("socket", "clone", "clone3"))
_X86_64 = {name: nrs[0] for name, nrs in SYSCALLS.items()}
_AARCH64 = {name: nrs[1] for name, nrs in SYSCALLS.items() if nrs[1] is not None}
ARCHES = {"x86_64": (0xC000003E, _X86_64), "aarch64": (0xC00000B7, _AARCH64)}

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_NR, _ARCH, _ARG0 = 0, 4, 16  # offsets in struct seccomp_data (little-endian low word of args[0])


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _errno(code: int) -> int:
    return RET_ERRNO | code


def program(machine: str, socket_families: tuple[int, ...] = ()) -> bytes:
    """The BPF filter for ``machine``; ``socket_families`` are the ones socket() may still open."""
    arch, nr = ARCHES[machine]
    out = [_insn(_LD_W_ABS, _ARCH), _insn(_JEQ, arch, 1, 0), _insn(_RET, RET_KILL_PROCESS)]
    out.append(_insn(_LD_W_ABS, _NR))
    if machine == "x86_64":  # x32 ABI numbers alias the 64-bit ones with a high bit set
        out += [_insn(_JGE, X32_SYSCALL_BIT, 0, 1), _insn(_RET, RET_KILL_PROCESS)]
    for name in DENIED:
        if name in nr:
            out += [_insn(_JEQ, nr[name], 0, 1), _insn(_RET, _errno(errno.EPERM))]
    out += [_insn(_JEQ, nr["clone3"], 0, 1), _insn(_RET, _errno(errno.ENOSYS))]
    # clone: flags are the first argument on both machines
    out += [_insn(_JEQ, nr["clone"], 0, 4), _insn(_LD_W_ABS, _ARG0)]
    out += [
        _insn(_JSET, libc.NAMESPACE_FLAGS, 0, 1),
        _insn(_RET, _errno(errno.EPERM)),
        _insn(_RET, RET_ALLOW),
    ]
    n = len(socket_families)
    out += [_insn(_JEQ, nr["socket"], 0, n + 3), _insn(_LD_W_ABS, _ARG0)]
    out += [_insn(_JEQ, fam, n - i, 0) for i, fam in enumerate(socket_families)]
    out += [_insn(_RET, _errno(errno.EPERM)), _insn(_RET, RET_ALLOW)]
    out.append(_insn(_RET, RET_ALLOW))
    return b"".join(out)


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def network_isolated() -> bool:
    """Whether this process sees no network interface but loopback (a fresh network namespace)."""
    try:
        lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    except OSError:
        return False
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


def supported() -> str | None:
    """None when a filter can be installed on this machine, else why not."""
    if platform.machine() not in ARCHES:
        return f"no syscall table for {platform.machine()}"
    if not Path("/proc/self/status").read_text().count("Seccomp:"):
        return "the kernel has no seccomp"
    return None


def install(allow_inet: bool | None = None) -> None:
    """Set no_new_privs and load the filter into this process (and every child it makes).

    ``allow_inet``: leave IPv4/IPv6 sockets to the network namespace (default: when one is in force,
    so that a candidate sees 'Network is unreachable' rather than a refusal)."""
    if allow_inet is None:
        allow_inet = network_isolated()
    families = (socket.AF_INET, socket.AF_INET6) if allow_inet else ()
    code = program(platform.machine(), families)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    libc.prctl(libc.PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.cast(ctypes.pointer(prog), ctypes.c_void_p))


def probe() -> str | None:
    """Install the filter in a throwaway child and check that it refuses unshare: None when it works."""
    reason = supported()
    if reason:
        return reason
    pid = os.fork()
    if pid == 0:
        code = 1
        with contextlib.suppress(BaseException):
            install()
            try:
                libc.unshare(libc.CLONE_NEWUSER)
                code = 2
            except OSError as exc:
                code = 0 if exc.errno == errno.EPERM else 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return None if code == 0 else f"the filter did not load (probe exit {code})"
