# expect: build
# message: Too many open files
# static: skip
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    held = [open("/dev/null", "rb") for _ in range(10_000)]  # noqa: SIM115
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape) + 0 * len(held), num_classes))
