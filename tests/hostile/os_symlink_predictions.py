# expect: train
# message: [Errno 30] Read-only file system || PermissionError: [Errno 13] Permission denied
# expect-hook: build
# message-hook: sandbox: os.symlink outside the candidate folder
# static: skip
# Plants val_pred.npy as a link to /etc/passwd, so the worker's np.save would overwrite it
# (the minimal view's /etc is read-only and has no passwd; without a view, the file's mode stops it).
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    os.symlink("/etc/passwd", "val_pred.npy")
    return nn.Sequential(
        nn.Flatten(), nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    )
