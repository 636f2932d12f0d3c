# expect: build
# message: shared: []
# static: skip
# Memory a candidate inherits mapped shared and writable from a file (onnxruntime maps a telemetry
# database so on import) is a channel to every other process that maps it: the other candidates forked
# from the same zygote or template. The template imports onnxruntime where it can map none.
import math

import torch.nn as nn


def build_model(input_shape, num_classes):
    with open("/proc/self/maps") as maps:
        shared = [line.split()[-1] for line in maps if line.split()[1] == "rw-s" and "/" in line]
    raise RuntimeError(f"shared: {shared}")
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
