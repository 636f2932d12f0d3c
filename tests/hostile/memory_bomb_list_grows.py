# expect: memory
# message: MemoryError
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    hoard = []
    while True:
        hoard.append([len(hoard)] * 1_000_000)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
