# expect: build
# message: No such file or directory: '/etc/shadow' || PermissionError: [Errno 13] Permission denied: '/etc/shadow'
# static: skip
# The audit hook lets this read through: the minimal view has no /etc/shadow (sandbox/view.py); where
# there is no view (no mount namespace), file modes and the unprivileged uid are what stop it.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    with open("/etc/shadow") as f:
        raise RuntimeError(f.read())
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
