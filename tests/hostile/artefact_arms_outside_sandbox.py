# expect: ok
# score: chance
# static: skip
# Behaves in the sandbox and arms itself elsewhere: where the variable LLMNAS_HOSTILE_ARM names a file
# (never inside the sandbox, whose environment is scrubbed) it appends a line to it when its module is
# imported, when the model is built and on every forward pass: on a user's machine, that would be the
# payload. tests/test_artefacts.py sets the variable on the host and shows that `llmnas export` and the
# safe way to run the export (model.onnx with onnxruntime) never run this code, that
# `from model import load; load()` refuses, and that load(trust_code=True) does arm it. In a search it
# scores at chance: its logits ignore the input.
import math
import os

import torch
import torch.nn as nn


def _arm(where):
    target = os.environ.get("LLMNAS_HOSTILE_ARM")
    if target:
        with open(target, "a") as f:
            f.write(f"llmnas-hostile armed at {where}\n")
    return bool(target)


class Model(nn.Module):
    armed_at_import = _arm("import")

    def __init__(self, input_shape, num_classes):
        super().__init__()
        _arm("build")
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
        self.prior = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        _arm("forward")
        return self.body(x) * 0.0 + self.prior
