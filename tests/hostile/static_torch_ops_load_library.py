# expect: static
# message: attribute `torch.ops.load_library` is not allowed
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    torch.ops.load_library("/tmp/llmnas-hostile-{{TOKEN}}.so")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
