# expect: export
# message: does not export to ONNX
# Trains like any small model, then refuses to be written as an ONNX graph. The artifact is what every
# candidate is scored on, so a model without one fails at its own stage, export, with the reason.
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        if torch.onnx.is_in_onnx_export():
            raise RuntimeError("this model keeps its weights to itself")
        return self.fc(x.flatten(1))
