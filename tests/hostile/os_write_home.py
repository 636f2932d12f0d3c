# expect: build
# message: [Errno 30] Read-only file system || PermissionError: [Errno 13] Permission denied
# message-hook: sandbox: writing '{{HOME}}/llmnas-hostile-
# static: skip
# Writes into the driver user's home (the worker's own HOME is its private folder).
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    fd = os.open("{{HOME}}/llmnas-hostile-{{TOKEN}}", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b"pwned")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
