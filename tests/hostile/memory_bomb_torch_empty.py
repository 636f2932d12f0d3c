# expect: memory
# message: can't allocate memory
# 50 GB in one allocation: the address-space limit refuses it before a page is touched.
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    hoard = torch.empty(50 * 1024**3, dtype=torch.uint8)
    hoard.fill_(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
