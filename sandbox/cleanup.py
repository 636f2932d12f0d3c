"""Remove a folder whatever a candidate left in it: deep trees, unreadable modes, many files.

Iterative (no recursion limit), one open directory at a time (no descriptor limit), relative to that
directory (no PATH_MAX), never following a link, fixing modes on the way down. What it cannot remove
(an immutable file, a mount point) it skips, then ``rm -rf --one-file-system`` has a go; it never
raises. It does NOT bound the time a huge tree takes: the candidate's tmpfs (nr_inodes) bounds that.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _open_dir(name: str, dir_fd: int) -> int:
    """Open a sub-folder, giving ourselves rwx on it first when it is ours and we lack them."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:  # mode 000: not a link (O_NOFOLLOW would say ELOOP), so chmod is safe
        os.chmod(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    info = os.fstat(fd)
    if info.st_mode & 0o700 != 0o700 and info.st_uid == os.geteuid() != 0:
        os.fchmod(fd, 0o700)  # readable but not writable: entries could not be unlinked
    return fd


def _first_subdir(fd: int) -> str | None:
    """Unlink every non-folder entry of ``fd``; return one sub-folder's name, or None when empty."""
    stuck = None
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    return entry.name
                os.unlink(entry.name, dir_fd=fd)
            except OSError:
                stuck = stuck or entry.name
    if stuck is not None:
        raise OSError(f"cannot remove {stuck!r}")
    return None


def _remove_walk(path: str) -> None:
    parent, name = os.path.split(os.path.abspath(path))
    top = os.open(parent, _DIR_FLAGS)
    try:
        fd = _open_dir(name, top)
    except BaseException:
        os.close(top)
        raise
    names: list[str] = []  # the path from ``path`` down to ``fd``; only strings are kept
    try:
        while True:
            sub = _first_subdir(fd)
            if sub is not None:
                child = _open_dir(sub, fd)
                os.close(fd)
                fd = child
                names.append(sub)
                continue
            if not names:
                break
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(names.pop(), dir_fd=fd)
        os.close(fd)
        fd = -1
        os.rmdir(name, dir_fd=top)
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(top)


def remove_tree(path: str | os.PathLike) -> bool:
    """Remove ``path`` and everything under it; True when it is gone. Never raises."""
    path = os.fspath(path)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return not os.path.lexists(path)
    with contextlib.suppress(Exception):
        _remove_walk(path)
    if os.path.lexists(path) and shutil.which("rm"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["rm", "-rf", "--one-file-system", "--", path], capture_output=True, timeout=300, check=False
            )
    return not os.path.lexists(path)
