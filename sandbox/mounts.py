"""Private mount views for candidates.

- ``make_private_tmp`` (the zygote, once): fresh tmpfs over /tmp, /var/tmp, /dev/shm and /run in the
  zygote's own mount namespace, with the folders it still needs (the pool, the interpreter, the code)
  bound back. Masking /run hides the host's pathname unix sockets (the network namespace does not).
- ``fresh_scratch`` (each candidate's child, after it unshared its mount namespace): the same again,
  size-limited and noexec, so every candidate starts with empty ones that vanish with it.
- ``mount_workdir`` / ``hand_back`` (the zygote, per candidate): a size- and inode-limited tmpfs as the
  candidate's working folder; only the known result files are copied to the host folder, then the
  tmpfs is unmounted, which frees whatever else the candidate left there.

What this does NOT stop: reading files (sandbox/view.py decides what a candidate sees), writing to
world-writable folders other than these, or the fresh-process mode's working folder
(``python -m sandbox.worker``), which stays a host folder bounded by RLIMIT_FSIZE only.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from pathlib import Path

from sandbox import libc

SHARED = {"/tmp": "1777", "/var/tmp": "1777", "/dev/shm": "1777", "/run": "755"}
ENABLE = "LLMNAS_PRIVATE_TMP"  # set by the driver only for processes it started in new namespaces
POOL = "LLMNAS_POOL_ROOT"
ZYGOTE_TMP_MB = 512
INODES = 16384  # per tmpfs: bounds how many files a candidate can leave for cleanup to walk
_TMPFS_FLAGS = libc.MS_NOSUID | libc.MS_NODEV
_COPY_CHUNK = 1 << 20


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def needed_paths(masked: tuple[str, ...] = tuple(SHARED)) -> list[str]:
    """Folders under a masked one that this interpreter must keep seeing, outermost only."""
    here = Path(__file__).resolve().parent.parent
    candidates = {
        os.environ.get(POOL, ""),
        sys.prefix,
        sys.base_prefix,
        str(here),
        os.path.dirname(os.path.realpath(sys.executable)),
        *sys.path,
    }
    found = sorted({os.path.realpath(p) for p in candidates if p and os.path.isdir(p)}, key=len)
    keep: list[str] = []
    for path in found:
        if _under(path, masked) and not _under(path, tuple(keep)):
            keep.append(path)
    return keep


def mask(size_mb: int, noexec: bool = False) -> None:
    """Fresh tmpfs over each folder of SHARED in the current mount namespace, needed folders (with the
    mounts under them) bound back on top. Raises OSError when a mount fails."""
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in needed_paths()}
    flags = _TMPFS_FLAGS | (libc.MS_NOEXEC if noexec else 0)
    try:
        for folder, mode in SHARED.items():
            if os.path.isdir(folder) and not os.path.islink(folder):
                options = f"mode={mode},size={size_mb}m,nr_inodes={INODES}"
                libc.mount("llmnas-tmp", folder, "tmpfs", flags, options)
        for path, fd in keep.items():
            os.makedirs(path, exist_ok=True)
            libc.mount(f"/proc/self/fd/{fd}", path, None, libc.MS_BIND | libc.MS_REC)
    finally:
        for fd in keep.values():
            os.close(fd)


def make_private_tmp() -> bool:
    """Mask the shared folders, when the driver asked for it and we are the first process of a new pid
    (and mount) namespace; never on the host's own mounts. Returns whether it did."""
    if os.environ.get(ENABLE) != "1" or os.getpid() != 1:
        return False
    mask(ZYGOTE_TMP_MB)
    return True


def fresh_scratch(size_mb: int) -> None:
    """In a process that just unshared its mount namespace: stop propagation both ways, then mask the
    shared folders afresh (size-limited, noexec) for this candidate alone."""
    libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
    mask(size_mb, noexec=True)


def mount_workdir(workdir: Path, uid: int | None, size_mb: int) -> int:
    """Cover the host folder ``workdir`` with a fresh tmpfs owned by ``uid``; return a descriptor of
    the host folder underneath, for ``hand_back``."""
    fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    try:
        options = f"mode=0700,size={size_mb}m,nr_inodes={INODES}{owner}"
        libc.mount("llmnas-work", str(workdir), "tmpfs", _TMPFS_FLAGS | libc.MS_NOEXEC, options)
    except OSError:
        os.close(fd)
        raise
    return fd


def hand_back(workdir: Path, host_fd: int, names: tuple[str, ...]) -> list[str]:
    """Copy the regular files ``names`` from the tmpfs at ``workdir`` into the host folder (links,
    FIFOs and devices are skipped), unmount the tmpfs, close ``host_fd``. Returns the names copied."""
    copied = []
    try:
        work = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for name in names:
                if _copy(name, work, host_fd):
                    copied.append(name)
        finally:
            os.close(work)
    finally:
        with contextlib.suppress(OSError):
            libc.umount(str(workdir))
        os.close(host_fd)
    return copied


def _copy(name: str, src_dir: int, dst_dir: int) -> bool:
    try:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=src_dir)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dst_dir)
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dst_dir)
        try:
            while chunk := os.read(src, _COPY_CHUNK):
                os.write(dst, chunk)
        finally:
            os.close(dst)
        return True
    finally:
        os.close(src)


def scoring_view(data_dir: str, workdir: str, keep: tuple[str, ...], size_mb: int) -> bool:
    """In the scoring process, still root: new mount and IPC namespaces, fresh scratch folders, and the
    pool covered by an empty read-only tmpfs but for ``workdir`` and the files ``keep`` of ``data_dir``,
    bound back at their paths (the files read-only). Returns False where the host allows no mount
    namespace: the scorer then sees what the training process saw (it runs no candidate code)."""
    try:
        libc.unshare(libc.CLONE_NEWNS)
    except OSError:
        return False
    with contextlib.suppress(OSError):
        libc.unshare(libc.CLONE_NEWIPC)
    fresh_scratch(size_mb)
    root = os.environ.get(POOL) or ""
    cover = root if root and _under(data_dir, (root,)) and _under(workdir, (root,)) else data_dir
    files = {os.path.join(data_dir, name): os.open(os.path.join(data_dir, name), os.O_PATH) for name in keep}
    fds = {workdir: os.open(workdir, os.O_PATH | os.O_DIRECTORY), **files}
    try:
        libc.mount("llmnas-score", cover, "tmpfs", _TMPFS_FLAGS | libc.MS_NOEXEC, "mode=0755,size=1m")
        for path, fd in fds.items():
            if path in files:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o444))
            else:
                os.makedirs(path, mode=0o755, exist_ok=True)
            libc.mount(f"/proc/self/fd/{fd}", path, None, libc.MS_BIND | libc.MS_REC)
            if path in files:
                libc.mount(None, path, None, libc.MS_REMOUNT | libc.MS_BIND | libc.MS_RDONLY | _TMPFS_FLAGS)
        libc.mount(None, cover, None, libc.MS_REMOUNT | libc.MS_RDONLY | _TMPFS_FLAGS | libc.MS_NOEXEC)
    finally:
        for fd in fds.values():
            os.close(fd)
    return True
