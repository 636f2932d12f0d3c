# expect: static
# message: `eval` is not allowed
import torch.nn as nn


def build_model(input_shape, num_classes):
    hidden = eval("6" + "4")
    return nn.Linear(hidden, num_classes)
