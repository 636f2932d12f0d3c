# expect: budget
# message: > limit 1,000,000
# 1.3 M weights stored as a buffer (a frozen random projection): only 200 k are "trainable parameters".
# The worker counts every parameter and every buffer.
import math

import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.register_buffer("projection", torch.randn(math.prod(input_shape), 20000) * 0.1)
        self.head = nn.Linear(20000, num_classes)

    def forward(self, x):
        return self.head(torch.relu(x.flatten(1) @ self.projection))
