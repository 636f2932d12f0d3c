# expect: budget
# message: > limit 1,000,000
# 1.2 M numbers kept in buffers named like BatchNorm statistics (running_mean, running_var): room to
# memorise a training set while claiming a tiny model. The count has no exception by name.
import math

import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.stash = nn.Module()
        self.stash.register_buffer("running_mean", torch.zeros(600_000))
        self.stash.register_buffer("running_var", torch.ones(600_000))
        self.head = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        return self.head(x.flatten(1))
