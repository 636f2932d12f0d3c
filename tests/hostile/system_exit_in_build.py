# expect: build
# message: SystemExit: 0
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    raise SystemExit(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
