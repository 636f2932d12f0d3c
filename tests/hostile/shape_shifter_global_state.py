# expect: train
# message: IndexError: Target
# forward mutates a module-level list: it passes the shape check, then changes its output shape.
import math

import torch.nn as nn

CALLS = [0]


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        CALLS[0] += 1
        out = self.fc(x.flatten(1))
        return out if CALLS[0] <= 2 else out[:, :3]
