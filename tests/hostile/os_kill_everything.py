# expect: build
# message: killed every process of my uid
# message-hook: sandbox: os.fork is not allowed
# static: skip
# kill(-1, SIGKILL) reaches every process the uid may signal in its pid namespace: only its own child;
# Linux spares the caller. The other slot (another uid, another namespace) and the zygote (root) are
# out of reach.
import math
import os
import signal

import torch.nn as nn


def build_model(input_shape, num_classes):
    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    os.kill(-1, signal.SIGKILL)
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        raise RuntimeError("killed every process of my uid")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
