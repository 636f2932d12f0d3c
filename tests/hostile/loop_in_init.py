# expect: timeout
# message: exceeded the 10 s time limit
# modes: os
# The hook plays no part here: it runs in the hook-off pool, so that the two pools share the waits.
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        n = 0
        while True:
            n += 1

    def forward(self, x):
        return x
