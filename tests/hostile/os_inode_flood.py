# expect: build
# message: OSError: [Errno 28] No space left on device
# static: skip
# Empty files until something gives: the working tmpfs has a bounded number of inodes, so cleanup
# never has millions of entries to walk.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    for i in range(1_000_000):
        open(f"f{i}", "w").close()
    raise RuntimeError("created a million files")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
