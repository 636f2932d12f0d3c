# expect: build
# message: PermissionError: [Errno 13] Permission denied: '/etc/shadow'
# static: skip
# The audit hook lets this read through: file modes and the unprivileged uid are what stop it.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    with open("/etc/shadow") as f:
        raise RuntimeError(f.read())
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
