# expect: crash
# message: exited with status 3 before reporting a result
# static: skip
# The payload of escape_forwardref_exit: os._exit skips every handler (and no audit event sees it).
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    torch.os._exit(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
