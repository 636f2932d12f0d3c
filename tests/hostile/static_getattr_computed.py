# expect: static
# message: needs a plain string literal
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    name = "o" + "s"
    getattr(torch, name).system("id")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
