# expect: timeout
# message: exceeded the 10 s time limit
# static: skip
# modes: os
# Sleeping uses no CPU time, so only the wall-clock deadline stops it (the hook plays no part: one
# pool is enough).
import math
import time

import torch.nn as nn


def build_model(input_shape, num_classes):
    time.sleep(3600)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
