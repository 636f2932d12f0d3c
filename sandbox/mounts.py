"""A private /tmp for candidates: fresh tmpfs over the world-writable folders, inside our own mount
namespace, with the folders this process still needs (the pool, the interpreter, the code) bound back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MASKED = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
ENABLE = "LLMNAS_PRIVATE_TMP"  # set by the driver only for processes it started in new namespaces
POOL = "LLMNAS_POOL_ROOT"


def _under(path: str, roots: tuple[str, ...]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def needed_paths() -> list[str]:
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
        if _under(path, MASKED) and not _under(path, tuple(keep)):
            keep.append(path)
    return keep


def make_private_tmp() -> bool:
    """Mask the world-writable folders, when the driver asked for it and we are the first process of a
    new pid (and mount) namespace; never on the host's own mounts. Returns whether it did."""
    if os.environ.get(ENABLE) != "1" or os.getpid() != 1:
        return False
    keep = {path: os.open(path, os.O_PATH | os.O_DIRECTORY) for path in needed_paths()}
    try:
        for folder in MASKED:
            if os.path.isdir(folder):
                _mount("-t", "tmpfs", "-o", "mode=1777,size=512m,nosuid,nodev", "llmnas-tmp", folder)
        for path, fd in keep.items():
            os.makedirs(path, exist_ok=True)
            _mount("--no-canonicalize", "--bind", f"/proc/self/fd/{fd}", path, fds=(fd,))
    finally:
        for fd in keep.values():
            os.close(fd)
    return True


def _mount(*args: str, fds: tuple[int, ...] = ()) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, pass_fds=fds)
