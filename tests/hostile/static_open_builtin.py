# expect: static
# message: `open` is not allowed
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    secret = open("/etc/shadow").read()  # noqa: SIM115
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape) + 0 * len(secret), num_classes))
