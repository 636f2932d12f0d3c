# expect: build
# message: PermissionError: [Errno 1] Operation not permitted || ProcessLookupError: [Errno 3] No such process
# message-hook: sandbox: os.kill is not allowed
# static: skip
# The zygote runs as root (pid 1 of its namespace), the candidate as an unprivileged uid: it cannot
# signal its parent.
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    torch.os.kill(torch.os.getppid(), 9)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
