# expect: build
# message: OSError: [Errno 27] File too large
# static: skip
# Inside its own folder, so the audit hook allows it: RLIMIT_FSIZE (64 MB) stops it (Python ignores
# SIGXFSZ, so the write fails with EFBIG).
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    block = b"\0" * (1 << 20)
    with open("big.bin", "wb") as f:
        for _ in range(200):
            f.write(block)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
