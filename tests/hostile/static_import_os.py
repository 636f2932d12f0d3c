# expect: static
# message: `import os` is not allowed
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    os.system("id")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
