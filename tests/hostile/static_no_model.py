# expect: static
# message: no model found
import math

import torch.nn as nn


def make_network(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
