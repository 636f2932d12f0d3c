# expect: static
# message: syntax error at line 7, column 42: expected ':'
# An LLM reply cut short: a missing colon.
import torch.nn as nn


def build_model(input_shape, num_classes)
    return nn.Linear(input_shape[0], num_classes)
