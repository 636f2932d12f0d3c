# expect: build
# message: FileNotFoundError
# static: skip
# Looks for the validation and test labels next to the inputs: there are none to find.
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    names = sorted(os.listdir("{{DATA_DIR}}"))
    print("data folder:", names)
    for name in ("val_y.npy", "test_y.npy", "y_val.npy", "labels.npy"):
        with open(os.path.join("{{DATA_DIR}}", name), "rb") as f:
            raise RuntimeError(f"found {name}: {f.read(64)!r}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
