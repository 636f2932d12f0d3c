# expect: build
# message: PermissionError: [Errno 13] Permission denied
# static: skip
# A mode-600 file of the driver's user in the pool's own folder, which candidates can see (the test
# puts it there): only the file's mode and the unprivileged uid protect it.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    with open("{{SECRET_FILE}}") as f:
        raise RuntimeError(f.read())
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
