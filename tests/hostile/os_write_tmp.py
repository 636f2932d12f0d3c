# expect: build
# message: wrote to /tmp, /var/tmp and /dev/shm
# message-hook: sandbox: writing '/tmp/llmnas-hostile-
# static: skip
# /tmp, /var/tmp and /dev/shm are world-writable: without the hook the writes succeed, into private
# tmpfs mounts of the zygote's mount namespace that vanish with it.
# test_no_file_changed_outside_the_candidate_folders judges where the files landed.
import math
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        fd = os.open(f"{folder}/llmnas-hostile-{{TOKEN}}", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"pwned")
        os.close(fd)
    raise RuntimeError("wrote to /tmp, /var/tmp and /dev/shm")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
