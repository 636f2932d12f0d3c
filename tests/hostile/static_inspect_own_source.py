# expect: static
# message: `import inspect` is not allowed
# A model that prints its own source (and everything around it).
import inspect
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    print(inspect.getsource(build_model))
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
