# expect: build
# message: built 3000 levels
# static: skip
# A directory tree 3000 levels deep (paths far beyond PATH_MAX), with unreadable modes on the way,
# in the candidate's own folder: shutil.rmtree overflowed Python's stack on it and left the pool
# folder behind. Cleanup must survive it (and the tmpfs working folder keeps it off the host).
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    fd, locked = os.open(".", os.O_RDONLY), []
    for level in range(3000):
        os.mkdir("d", dir_fd=fd)
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
        child = os.open("d", os.O_RDONLY, dir_fd=fd)
        if level % 500 == 499:
            locked.append(os.dup(child))  # made unreadable once everything below it exists
        os.close(fd)
        fd = child
    for lock in locked:
        os.chmod(lock, 0)
    os.chmod("d", 0)
    raise RuntimeError("built 3000 levels")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
