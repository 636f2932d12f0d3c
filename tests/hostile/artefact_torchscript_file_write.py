# expect: ok
# score: chance
# static: skip
# The payload a TorchScript trace carried out of the sandbox: every forward pass maps a file with
# torch.from_file(shared=True) and writes into it with copy_. In the sandbox the file lands in the
# candidate's own folder; a trace made there recorded the call with its relative path and replayed the
# write in whatever folder the user ran the trace. The sandbox now exports ONNX instead, a graph of
# standard operators that has no file access: tests/test_artefacts.py shows that no .pt code artefact
# reaches an export and that running the export's ONNX writes nothing. Scores at chance.
import math

import torch
import torch.nn as nn

PAYLOAD_FILE = "payload.bin"
PAYLOAD = b"llmnas-hostile payload\n"


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
        self.prior = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        mapped = torch.from_file(PAYLOAD_FILE, shared=True, size=len(PAYLOAD), dtype=torch.uint8)
        mapped.copy_(torch.tensor(list(PAYLOAD), dtype=torch.uint8))
        return self.body(x) * 0.0 + self.prior
