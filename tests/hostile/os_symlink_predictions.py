# expect: ok
# score: chance
# counted: 650
# expect-hook: build
# message-hook: sandbox: os.symlink outside the candidate folder
# static: skip
# Plants val_pred.npy as a link to /etc/passwd, so that a later np.save would write through it. The
# training process's leftovers are cleared before scoring (only the weights and the artifact stay), so
# the scorer writes its predictions to a new file: the candidate is scored as the linear model it is.
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    os.symlink("/etc/passwd", "val_pred.npy")
    return nn.Sequential(
        nn.Flatten(), nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    )
