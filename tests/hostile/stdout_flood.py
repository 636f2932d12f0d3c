# expect: build
# message: OSError: [Errno 27] File too large
# 100 MB on stdout: output goes to a file under RLIMIT_FSIZE (64 MB); Python ignores SIGXFSZ, so
# the write fails with EFBIG.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    print("x" * 100_000_000, flush=True)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
