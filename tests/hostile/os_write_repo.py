# expect: build
# message: [Errno 30] Read-only file system || PermissionError: [Errno 13] Permission denied
# message-hook: sandbox: writing '{{REPO}}/llmnas-hostile-
# static: skip
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    fd = os.open("{{REPO}}/llmnas-hostile-{{TOKEN}}.py", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b'import os\nos.system("id")\n')
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
