# expect: ok
# score: chance
# static: skip
# The earlier round's measurement forgeries, from the candidate's own module: wherever it is imported it
# rebinds what a scorer that runs in the same process would call at measuring time (the weights-file
# parameter counter, the FLOP counter, the latency and depth measurements, the worker's clock), and
# once the trained weights are loaded and it runs in eval mode (not while exported) it replaces
# weights.safetensors with a one-number file, so a count of the file says 1 too. Under a scorer that
# builds the model from its code this reports params 1, 0 FLOPs, 0 ms. Where the size is what the
# artifact carries (issue 29), params is the element count of model.onnx's initializers and constants,
# FLOPs and latency are measured on that graph, and the weights file is the one the training process
# left (its SHA-256 recorded as it exited). Its only trained weights are biases: accuracy at chance.
import math
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn

WEIGHTS = "weights.safetensors"


def _forge():
    score = sys.modules.get("sandbox.score")
    if score is not None:
        fake = types.SimpleNamespace(
            latency_ms=lambda *args, **kwargs: (0.0, 0.0, 5), depth=lambda model: 1, count_params=lambda m: 1
        )
        for name, value in (
            ("stored_params", lambda path: 1),
            ("count_flops", lambda model, x: 0),
            ("measure", fake),
            ("_RSS", lambda field="VmRSS": 0.0),
        ):
            if hasattr(score, name):
                setattr(score, name, value)
    worker = sys.modules.get("sandbox.worker")
    if worker is not None and hasattr(worker, "_CLOCK"):
        worker._CLOCK = lambda: 1e300  # wall_seconds, and from it energy and CO2


def _replace_weights():
    try:
        from safetensors.numpy import save_file

        save_file({"w": np.zeros(1, dtype=np.float32)}, WEIGHTS)
    except Exception:  # noqa: BLE001
        pass


_forge()


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(math.prod(input_shape), num_classes)
        with torch.no_grad():
            self.fc.weight.zero_()
        self.fc.weight.requires_grad_(False)
        self.replaced = False

    def forward(self, x):
        if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
            return self.fc(x.flatten(1))
        if not self.training and not self.replaced and os.path.exists(WEIGHTS):
            self.replaced = True
            _replace_weights()
        return self.fc(x.flatten(1))
