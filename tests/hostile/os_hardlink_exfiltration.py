# expect: build
# message: No such file or directory: '/etc/shadow' || [Errno 18] Invalid cross-device link || [Errno 1] Operation not permitted
# message-hook: sandbox: os.link outside the candidate folder
# static: skip
# Replaces stdout.txt, which the driver copies into the run folder, with a hard link to /etc/shadow.
# Without the hook: the minimal view has no /etc/shadow; without a view, the pool folder is a bind mount (links across mounts fail with EXDEV), and
# fs.protected_hardlinks refuses links to files the uid cannot write (EPERM: os_hardlink_same_mount).
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    os.unlink("stdout.txt")
    os.link("/etc/shadow", "stdout.txt")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
