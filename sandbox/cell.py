"""What one candidate gets of its own, set up around the zygote's fork and torn down after it.

Zygote side, before the fork (``Cell.open``): a cgroup (sandbox/cgroup.py) and, when the zygote has its
own mount namespace, a size-limited tmpfs as the working folder. Child side, as root, before confinement
(``Cell.enter``): join the cgroup, then new IPC, UTS and mount namespaces with fresh /tmp, /var/tmp,
/dev/shm and /run (sandbox/mounts.py). SysV shared memory, semaphores and message queues, POSIX queues
and everything in those folders die with the candidate's last process. Zygote side, once every process
is gone (``Cell.close``): copy the result files out, unmount the working folder, remove the cgroup.

What it does NOT stop: whatever the candidate reaches through the rest of the filesystem (the zygote's
minimal view, sandbox/view.py, then uid and modes decide), or the network (the zygote's network
namespace and the seccomp filter decide).
"""

from __future__ import annotations

import errno
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sandbox import cgroup, libc, mounts
from sandbox.protocol import ONNX_FILE, PRED_FILES, RESULT_FILE, STDOUT_FILE, WEIGHTS_FILE, Limits

OUTPUT_NAMES = (RESULT_FILE, *PRED_FILES.values(), WEIGHTS_FILE, ONNX_FILE, STDOUT_FILE)
WORKDIR_FILES = 4  # the working tmpfs holds this many files at the RLIMIT_FSIZE limit
FULL_MARGIN = 1 << 20  # less free space than this in the working tmpfs counts as full
CHILD_NAMESPACES = (libc.CLONE_NEWNS, libc.CLONE_NEWIPC, libc.CLONE_NEWUTS)


def group_memory_mb(limits: Limits) -> int:
    """The memory of the candidate as a whole: its limit plus headroom, so that one process alone meets
    its RLIMIT_AS (a clear MemoryError) before the group's OOM kill or the watcher's."""
    return limits.memory_mb + max(128, limits.memory_mb // 4)


def workdir_mb(limits: Limits) -> int:
    """Size of a candidate's working tmpfs: weights, TorchScript, predictions and stdout at their limit."""
    return WORKDIR_FILES * limits.file_mb


def folder_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has (almost) no space or inodes left."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < FULL_MARGIN or st.f_favail < 8


@dataclass
class Cell:
    workdir: Path
    limits: Limits
    uid: int | None
    group: cgroup.Group | None = None
    host_fd: int | None = None  # the host working folder under our tmpfs, while one is mounted
    namespaces: int = 0  # what the child managed to unshare (child side only)

    @classmethod
    def open(cls, workdir: Path, limits: Limits, uid: int | None, cpus: float, private_mounts: bool) -> Cell:
        """``private_mounts``: the zygote has a mount namespace of its own (mounts.make_private_tmp)."""
        cell = cls(workdir, limits, uid)
        cell.group = cgroup.create(
            f"llmnas-{uuid.uuid4().hex[:12]}", group_memory_mb(limits), limits.nproc, cpus
        )
        if private_mounts:
            try:
                cell.host_fd = mounts.mount_workdir(workdir, uid, workdir_mb(limits))
            except OSError:
                cell.host_fd = None  # fall back to the host folder, bounded by RLIMIT_FSIZE per file
        return cell

    def enter(self) -> None:
        """In the forked child, still root: cgroup, namespaces, fresh scratch folders."""
        if self.group is not None:
            self.group.join()  # raises: a candidate never runs outside the group it was given
        for flag in CHILD_NAMESPACES:  # one by one: a host may allow some and not others
            try:
                libc.unshare(flag)
                self.namespaces |= flag
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EINVAL, errno.ENOSPC, errno.EUSERS):
                    raise
        if self.namespaces & libc.CLONE_NEWNS:
            mounts.fresh_scratch(self.limits.file_mb)

    def full(self) -> bool:
        """Whether the working tmpfs ran out of space or inodes (no room left for a result)."""
        return self.host_fd is not None and folder_full(self.workdir)

    def close(self) -> list[str]:
        """After every process of the candidate is gone: results out, tmpfs and cgroup away."""
        copied: list[str] = []
        if self.host_fd is not None:
            copied = mounts.hand_back(self.workdir, self.host_fd, OUTPUT_NAMES)
            self.host_fd = None
        if self.group is not None:
            self.group.remove()
        return copied
