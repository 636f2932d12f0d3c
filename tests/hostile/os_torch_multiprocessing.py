# expect: build
# message: No module named 'multiprocessing.popen_fork' || started 4 spinning processes
# message-hook: sandbox: os.fork is not allowed || No module named 'multiprocessing.popen_fork' || popen_fork.py' is not allowed
# static: skip
# The import of popen_fork runs after the uid drop: where the interpreter's folders are unreadable to
# the sandbox uid (an interpreter under /root, without the minimal view), it fails before anything
# forks; with the hook, reading a file under /root is refused. Where it can fork,
# the spinners must not outlive the candidate.
import math

import torch
import torch.multiprocessing
import torch.nn as nn


def _spin():
    while True:
        pass


def build_model(input_shape, num_classes):
    ctx = torch.multiprocessing.get_context("fork")
    for _ in range(4):
        ctx.Process(target=_spin, daemon=False).start()
    raise RuntimeError("started 4 spinning processes")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
