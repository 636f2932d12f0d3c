# expect: static
# message: `exit` is not allowed
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    exit(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
