# expect: crash
# message: file size limit exceeded
# static: skip
# Empty files until something gives: the working tmpfs has a bounded number of inodes, so cleanup
# never has millions of entries to walk. With no inode left for a result, the zygote reports the
# candidate as over its file limit (SIGXFSZ).
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    for i in range(1_000_000):
        open(f"f{i}", "w").close()
    raise RuntimeError("created a million files")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
