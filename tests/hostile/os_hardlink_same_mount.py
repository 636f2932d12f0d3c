# expect: build
# message: PermissionError: [Errno 1] Operation not permitted || [Errno 18] Invalid cross-device link
# message-hook: sandbox: os.link outside the candidate folder
# static: skip
# os_hardlink_exfiltration on the same mount: a mode-600 file of the driver's user in the pool's own
# folder (the test puts it there), linked in place of stdout.txt, which the driver copies out.
# fs.protected_hardlinks refuses links to files the uid neither owns nor may read and write; where the
# working folder is the candidate's own tmpfs (zygote mode), the link crosses mounts (EXDEV).
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    os.unlink("stdout.txt")
    os.link("{{SECRET_FILE}}", "stdout.txt")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
