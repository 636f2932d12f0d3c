# expect: ok
# score: chance
# counted: 650
# static: skip
# Like os_forged_result, with well-formed weights: 2 M elements in the safetensors file, "params: 1"
# in its own result.json, written from build_model in the process that finds weights.safetensors in its
# folder: the scoring process, when scoring rebuilt the model from code. Scoring now runs the artifact
# and no candidate code, so the forgery never happens: the candidate is scored as the linear model it
# trained, 650 numbers in its graph (any accuracy it earns is its own).
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file


def build_model(input_shape, num_classes):
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    if not os.path.exists("weights.safetensors"):
        return model
    frame = sys._getframe()
    while "job" not in frame.f_locals:
        frame = frame.f_back
    job = frame.f_locals["job"]
    rng = np.random.default_rng(0)
    for split in ("val", "test"):
        n = len(np.load(os.path.join(job.data_dir, split + "_x.npy")))
        np.save(split + "_pred.npy", rng.normal(size=(n, job.num_classes)).astype(np.float32))
    save_file({"hidden.weight": torch.zeros(2000, 1000)}, "weights.safetensors")
    metrics = dict(params=1, flops=1, depth=1, latency_ms=0.001)
    with open("result.json", "w") as f:
        json.dump(dict(candidate_id=job.candidate_id, ok=True, metrics=metrics), f)
    os._exit(0)
