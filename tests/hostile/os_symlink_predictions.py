# expect: train
# message: PermissionError: [Errno 13] Permission denied
# expect-hook: build
# message-hook: sandbox: os.symlink outside the candidate folder
# static: skip
# Plants val_pred.npy as a link to /etc/passwd, so the worker's np.save would overwrite it.
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    os.symlink("/etc/passwd", "val_pred.npy")
    return nn.Sequential(
        nn.Flatten(), nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    )
