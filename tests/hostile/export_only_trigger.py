# expect: ok
# score: chance
# A linear model that behaves one way when it is run and another way while it is exported: under
# torch.onnx.export (torch.onnx.is_in_onnx_export()) it adds a trigger branch that turns its answer
# upside down (the logits negated: the least likely class wins). Scored by running the module, it is a
# fair linear classifier; the model.onnx that users get answers otherwise. Where what is scored IS the
# exported graph (issue 29), the score is the graph's: below chance, and the same accuracy that running
# the shipped model.onnx with onnxruntime gives (tests/test_artifact_scoring.py).
import math

import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x):
        logits = self.fc(x.flatten(1))
        if torch.onnx.is_in_onnx_export():
            return -logits
        return logits
