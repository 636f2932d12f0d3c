# expect: ok
# score: chance
# counted: 650
# static: skip
# Trains honestly, then, in the process that finds weights.safetensors in its folder (the scoring
# process, when scoring rebuilt the model from code), writes its own result.json with params = 10**400
# and a negative latency and leaves. Scoring now runs the artifact and no candidate code: the candidate
# is scored as the linear model it trained (650 numbers). The driver's validation of a forged report
# is tested on hand-written reports (tests/test_scoring_honest.py).
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
