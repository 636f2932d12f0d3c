# expect: static
# message: `getattr(..., 'os')` is not allowed
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    getattr(torch, "os").system("id")  # noqa: B009
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
