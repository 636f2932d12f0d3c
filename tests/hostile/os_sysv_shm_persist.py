# expect: build
# message: created SysV segment
# message-hook: sandbox: ctypes
# static: skip
# SysV shared memory lives in the IPC namespace, not in any folder: each candidate's child unshares its
# own, so the segment dies with it. A second run in the same slot must not find the first one's
# (test_containment runs it twice); the host never sees it.
import ctypes
import math

import torch.nn as nn

KEY = 0x4C4C0000 | (sum(map(ord, "{{TOKEN}}")) & 0xFFFF)


def build_model(input_shape, num_classes):
    libc = ctypes.CDLL(None, use_errno=True)
    found = libc.shmget(KEY, 0, 0)
    if found >= 0:
        raise RuntimeError(f"found the previous candidate's SysV segment {found}")
    shm = libc.shmget(KEY, 1 << 20, 0o1666)  # IPC_CREAT | 0666
    if shm < 0:
        raise OSError(ctypes.get_errno(), "shmget")
    raise RuntimeError(f"created SysV segment {shm} with key {KEY:#x}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
