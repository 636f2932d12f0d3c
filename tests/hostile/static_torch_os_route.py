# expect: static
# message: attribute `torch.os.system` is not allowed
# `torch` imports os at module level, so `torch.os` is os itself.
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    torch.os.system("touch /tmp/llmnas-hostile-{{TOKEN}}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
