# expect: build
# message: build_model returned NoneType, not a torch.nn.Module
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    model.eval()
