# expect: memory
# message: can't allocate memory
# 10^10 parameters (40 GB): refused at allocation, before the parameter budget is even checked.
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 100000), nn.Linear(100000, 100000), nn.Linear(100000, 10)
    )
