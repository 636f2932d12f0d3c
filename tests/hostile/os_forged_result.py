# expect: crash
# message: the training process exited without a valid report
# static: skip
# The payload of escape_forwardref_forged_result: finds the worker's job in a caller's frame, writes
# its own ok result.json (one parameter, a microsecond of latency), random predictions and junk
# weights, and leaves with status 0 before the worker measures anything. The driver scores the
# predictions itself (chance) and reads the parameter count from the weights file's header: junk
# there ends the candidate as a crash.
# Since scoring moved to a fresh process, the forged files never leave the training process: the
# worker keeps only a valid training report and the weights from it, and this one left neither.
import json
import math
import os
import sys

import numpy as np
import torch.nn as nn


def build_model(input_shape, num_classes):
    frame = sys._getframe()
    while "job" not in frame.f_locals:
        frame = frame.f_back
    job = frame.f_locals["job"]
    rng = np.random.default_rng(0)
    for split in ("val", "test"):
        n = len(np.load(os.path.join(job.data_dir, split + "_x.npy")))
        np.save(split + "_pred.npy", rng.normal(size=(n, job.num_classes)).astype(np.float32))
    with open("weights.safetensors", "wb") as f:
        f.write(b"not a safetensors file")
    metrics = dict(
        params=1,
        flops=1,
        depth=1,
        latency_ms=0.001,
        latency_iqr_ms=0.0,
        peak_mem_mb=1.0,
        train_seconds=0.1,
        train_steps=20,
        final_loss=0.01,
        holdout_acc=1.0,
    )
    with open("result.json", "w") as f:
        json.dump(dict(candidate_id=job.candidate_id, ok=True, metrics=metrics), f)
    os._exit(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
