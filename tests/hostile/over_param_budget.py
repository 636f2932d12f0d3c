# expect: budget
# message: > limit 1,000,000
# 1.6 M parameters (6 MB): builds and runs, so the budget check is what stops it.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), 20000), nn.Linear(20000, num_classes)
    )
