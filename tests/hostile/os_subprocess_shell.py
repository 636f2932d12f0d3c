# expect: build
# message: No such file or directory: 'sh' || returned non-zero exit status
# message-hook: sandbox: subprocess.Popen is not allowed
# static: skip
# A shell that writes into the driver user's home: the minimal view has no shell to run; without a
# view it runs (no hook) as the candidate's uid, so the write fails and `sh` exits non-zero.
import math
import subprocess

import torch.nn as nn


def build_model(input_shape, num_classes):
    subprocess.run(["sh", "-c", "echo pwned > {{HOME}}/llmnas-hostile-{{TOKEN}}-sub"], check=True)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
