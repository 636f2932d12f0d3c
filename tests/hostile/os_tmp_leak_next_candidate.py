# expect: build
# message: left files in /tmp, /var/tmp and /dev/shm
# message-hook: sandbox: writing '/tmp/llmnas-hostile-
# static: skip
# Looks for what the previous candidate of its slot left in the world-writable folders, then leaves
# its own there. Each candidate gets fresh ones, so a second run in the same slot (test_containment)
# must find nothing.
import math
import os

import torch.nn as nn

NAME = "llmnas-hostile-{{TOKEN}}-left"


def build_model(input_shape, num_classes):
    folders = ("/tmp", "/var/tmp", "/dev/shm")
    found = [d for d in folders if os.path.exists(os.path.join(d, NAME))]
    if found:
        raise RuntimeError(f"found the previous candidate's files in {found}")
    for d in folders:
        with open(os.path.join(d, NAME), "w") as f:
            f.write("left behind")
    raise RuntimeError("left files in /tmp, /var/tmp and /dev/shm")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
