# expect: crash
# message: the interpreter crashed (SIGSEGV)
# expect-hook: build
# message-hook: sandbox: os.kill is not allowed
# static: skip
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    torch.os.kill(torch.os.getpid(), 11)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
