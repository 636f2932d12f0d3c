# expect: static
# message: attribute `().__class__.__bases__[0].__subclasses__` is not allowed
# The classic sandbox escape: walk from a literal to every loaded class.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    for cls in ().__class__.__bases__[0].__subclasses__():
        if cls.__name__ == "Popen":
            cls(["id"])
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
