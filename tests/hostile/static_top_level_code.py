# expect: static
# message: would run at import time
import math

import torch
import torch.nn as nn

WEIGHTS = torch.zeros(1 << 20)


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
