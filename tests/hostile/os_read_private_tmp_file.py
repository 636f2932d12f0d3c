# expect: build
# message: FileNotFoundError: [Errno 2] No such file or directory
# static: skip
# A world-readable file the driver left in the host's /tmp (the test puts it there): the zygote's
# mount namespace has its own /tmp, where the file does not exist.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    with open("{{TMP_SECRET_FILE}}") as f:
        raise RuntimeError(f.read())
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
