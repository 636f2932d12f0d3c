# expect: memory
# message: killed (SIGKILL), most likely for memory
# expect-hook: build
# message-hook: sandbox: os.fork is not allowed
# static: skip
# Six children of 400 MiB each: every one is under the per-process RLIMIT_AS, together they are far
# over the candidate's memory limit. The cell's cgroup (or the zygote's watcher) counts them together.
import math
import os
import time

import torch.nn as nn


def build_model(input_shape, num_classes):
    kids = []
    for _ in range(6):
        pid = os.fork()
        if pid == 0:
            block = b"\1" * (400 << 20)
            time.sleep(60)
            os._exit(len(block) & 0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    raise RuntimeError("six children of 400 MiB ran to the end")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
