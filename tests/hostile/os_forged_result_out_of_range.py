# expect: crash
# message: metrics.params input should be less than or equal to 9007199254740992
# static: skip
# Trains honestly, then in the scoring process (the one that finds weights.safetensors in its
# folder) writes its own result.json with params = 10**400 and a negative latency, next to valid
# predictions, and leaves before the scorer measures anything. The driver validates every metric
# (bounded, finite, non-negative): the report is refused, naming the value, and the run goes on.
import json
import math
import os
import sys

import numpy as np
import torch.nn as nn


def build_model(input_shape, num_classes):
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    if not os.path.exists("weights.safetensors"):
        return model
    frame = sys._getframe()
    while "job" not in frame.f_locals:
        frame = frame.f_back
    job = frame.f_locals["job"]
    for split in ("val", "test"):
        n = len(np.load(os.path.join(job.data_dir, split + "_x.npy")))
        np.save(split + "_pred.npy", np.zeros((n, job.num_classes), dtype=np.float32))
    metrics = dict(params=10**400, flops=1, depth=1, latency_ms=-1.0)
    with open("result.json", "w") as f:
        json.dump(dict(candidate_id=job.candidate_id, ok=True, metrics=metrics), f)
    os._exit(0)
