# expect: static
# message: `__import__` is not allowed
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    __import__("os").system("id")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
