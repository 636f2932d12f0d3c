"""Pool folders whose driver died (kill -9, power cut) are found and swept when the next pool starts.

A live pool holds an exclusive ``flock`` on ``owner.lock`` in its folder; the kernel drops it when the
driver dies, however it dies. The lock file also names the pool's candidate uids, so a sweep can kill a
candidate that still runs after its zygote (it may sit in another mount namespace, where its cwd does
not read as a path inside the folder). Those uids are a block reserved the same way (``reserve_uids``): a
live pool holds its block's lock, a new pool never takes a block a pool folder still names, and a sweep
kills by uid only while it holds the block's lock itself, so it never reaches another pool's candidates.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from sandbox.cleanup import remove_tree

PREFIX = "llmnas-sandbox-"
LOCK = "owner.lock"
UID_START, UID_BLOCK, UID_BLOCKS = 1_000_000, 256, 1 << 16  # candidate uids: blocks of 256 above 1,000,000
_POOLS = itertools.count()
_UNLOCKED_GRACE_S = 3600.0  # a folder without a lock file (older llmnas, or mid-creation) is left this long


def claim(root: Path, uids: range) -> int:
    """Lock a new pool folder for this process; the descriptor must stay open while the pool lives.

    The lock file is made, locked and written under a name of its own, then renamed into place: a sweep
    in another process never sees an ``owner.lock`` that is not yet locked (it would take the live pool
    for a dead one, kill its zygotes and remove its folder)."""
    staging = root / f".{LOCK}.{os.getpid()}"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": os.getpid(), "uids": [uids.start, uids.stop]}).encode())
    os.rename(staging, root / LOCK)
    return fd


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def release_uids(uids: range, fd: int | None) -> None:
    """Give a uid block back: its lock file goes while still locked, so nothing is left in the temp
    folder and a process that opened the old file sees it is no longer the block's (``_lock_block``)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.unlink(_block_path(uids.start))
        release(fd)


def reserve_uids(count: int) -> tuple[range, int | None]:
    """Unprivileged uids for a new pool's slots, as root (else none): a block no live pool holds and no
    pool folder names (a dead driver's candidates may still run under it until its folder is swept). The
    descriptor holds the block while it stays open."""
    if os.geteuid() != 0:
        return range(0), None
    named = {_uids(Path(entry.path)).start for entry in _pool_folders()}
    first = (os.getpid() * 64 + next(_POOLS)) % UID_BLOCKS
    for i in range(UID_BLOCKS):
        start = UID_START + (first + i) % UID_BLOCKS * UID_BLOCK
        if start not in named and (fd := _lock_block(start)) is not None:
            return range(start, start + count), fd
    raise RuntimeError(f"all {UID_BLOCKS} candidate uid blocks are taken")


def _block_path(start: int) -> Path:
    return Path(tempfile.gettempdir()) / f"llmnas-uids-{start}.lock"


def _lock_block(start: int) -> int | None:
    """The descriptor holding the uid block at ``start``, or None when a live pool holds it."""
    path = _block_path(start)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with contextlib.suppress(BlockingIOError, FileNotFoundError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:  # not a file given back
            return fd
    os.close(fd)
    return None


@contextlib.contextmanager
def _owner_gone(root: Path) -> Iterator[bool]:
    """Whether nobody holds the folder's lock (an unlocked folder: whether it is old). A lock taken here
    is held until the sweep is done, so two sweeps never work on one folder at once."""
    try:
        fd = os.open(root / LOCK, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        yield time.time() - root.stat().st_mtime > _UNLOCKED_GRACE_S
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _uids(root: Path) -> range:
    """The candidate uids a pool folder's lock file names (none when it names none)."""
    try:
        start, stop = json.loads((root / LOCK).read_text())["uids"]
        return range(int(start), int(stop))
    except (OSError, ValueError, KeyError, TypeError):
        return range(0)


def _uid(pid: str) -> int:
    """A process's real uid (from status: /proc/PID itself is root's when it is not dumpable)."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Uid:")).split()[1])


def sweep_sandbox(root: Path) -> bool:
    """Kill every process working inside pool folder ``root`` or running as one of its candidate
    uids, then remove the folder. Refuses anything that is not a pool folder in the temp folder."""
    root = Path(root)
    if not root.name.startswith(PREFIX) or root.parent != Path(tempfile.gettempdir()):
        return False
    uids = _uids(root)
    block = _lock_block(uids.start) if uids else None  # held by a live pool: its uids are not ours to kill
    if block is None:
        uids = range(0)
    inside = str(root) + os.sep
    try:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError, ValueError):
                if _uid(entry.name) in uids or os.readlink(f"/proc/{entry.name}/cwd").startswith(inside):
                    os.kill(int(entry.name), signal.SIGKILL)
        return remove_tree(root)
    finally:
        release_uids(uids, block)


def _pool_folders() -> list[os.DirEntry]:
    """Pool folders of ours in the temp folder, live or dead."""
    found = []
    for entry in os.scandir(tempfile.gettempdir()):
        with contextlib.suppress(OSError):
            ours = entry.name.startswith(PREFIX) and entry.is_dir(follow_symlinks=False)
            if ours and entry.stat(follow_symlinks=False).st_uid == os.geteuid():
                found.append(entry)
    return found


def sweep_stale() -> list[Path]:
    """Sweep every pool folder of ours in the temp folder whose driver is gone; the folders swept."""
    swept = []
    for entry in _pool_folders():
        root = Path(entry.path)
        with contextlib.suppress(OSError), _owner_gone(root) as gone:
            if gone and sweep_sandbox(root):
                swept.append(root)
    return swept
