# expect: static
# message: `import time` is not allowed
import math
import time

import torch.nn as nn


def build_model(input_shape, num_classes):
    time.sleep(3600)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
