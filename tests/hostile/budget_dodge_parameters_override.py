# expect: budget
# message: > limit 1,000,000
# 1.3 M parameters, but parameters() answers "none" the first time it is asked, which is when
# the worker counts them; training asks again and gets them all. The worker counts with
# nn.Module.parameters captured before any candidate ran, so the override is never asked.
import math

import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), 20000), nn.Linear(20000, num_classes)
        )
        self.asked = 0

    def parameters(self, recurse=True):
        self.asked += 1
        if self.asked == 1:
            return iter(())
        return super().parameters(recurse)

    def forward(self, x):
        return self.body(x)
