# expect: build
# message: PermissionError: [Errno 13] Permission denied
# message-hook: sandbox: writing '{{DATA_DIR}}/train_y.npy' outside the candidate folder
# static: skip
# Overwrites the shared training labels, to poison every later candidate: they are root's, mode 644.
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    fd = os.open("{{DATA_DIR}}/train_y.npy", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"poison")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
