# expect: shape
# message: forward returned dict, expected a Tensor of logits
import math

import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        return {"logits": self.fc(x.flatten(1))}
