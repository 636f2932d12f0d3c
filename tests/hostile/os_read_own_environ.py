# expect: build
# message: PermissionError: [Errno 13] Permission denied: '/proc/self/environ'
# message-hook: sandbox: reading '/proc/self/environ' is not allowed
# static: skip
# After the uid drop the process is not dumpable: its /proc/self files belong to root.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    with open("/proc/self/environ", "rb") as f:
        f.read()
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
