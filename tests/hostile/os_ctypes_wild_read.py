# expect: crash
# message: the interpreter crashed (SIGSEGV)
# message-hook: sandbox: ctypes.string_at is not allowed
# expect-hook: build
# static: skip
# ctypes is already loaded in the worker (torch imports it): a read from address 1. The hook refuses
# every ctypes call; without it the read faults and the process dies of SIGSEGV, alone.
import ctypes
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    ctypes.string_at(1, 64)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
