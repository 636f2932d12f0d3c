# expect: crash
# message: file size limit exceeded
# static: skip
# 24 files of 60 MiB, each under RLIMIT_FSIZE: the working folder is a tmpfs of four times the file
# limit, so the disk a candidate can fill is bounded as a whole. With no room left for a result, the
# zygote reports the candidate as over its file limit (SIGXFSZ).
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    block = b"\0" * (1 << 20)
    for i in range(24):
        with open(f"fill-{i}.bin", "wb") as f:
            for _ in range(60):
                f.write(block)
    raise RuntimeError("wrote 24 files of 60 MiB")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
