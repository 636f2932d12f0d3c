# expect: static
# message: torch._
import math

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    torch._C._set_print_stack_traces_on_fatal_signal(False)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
