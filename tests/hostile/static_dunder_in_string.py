# expect: static
# message: string containing `__globals__` is not allowed
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    fmt = "{0.__globals__}"
    leaked = fmt.format(build_model)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape) + 0 * len(leaked), num_classes))
