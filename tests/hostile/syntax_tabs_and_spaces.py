# expect: static
# message: inconsistent use of tabs and spaces
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    if num_classes:
	    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    return None
