# expect: ok
# score: chance
# static: skip
# Training and scoring of one candidate share its /dev/shm and /tmp: the training side writes what it
# learns there, the scoring side reads it back. Its only trained weights are biases (chance). While
# training, a gradient hook on the logits reads each label back from d loss / d logits (the one
# negative entry) and saves every (input, label) pair seen so far to /dev/shm and /tmp with torch.save
# (whose writer opens the file in C++, past the audit hook's `open` event). A model built where that
# stash already exists loads it into a plain attribute and answers with the label of the nearest
# remembered input: far above chance, with params = 10, when scoring builds the model from its code.
# Where scoring runs the exported graph in a process of its own, with fresh /tmp and /dev/shm and no
# candidate code (issue 29), the graph exported by the training process holds the bias only: chance.
import contextlib
import math

import torch
import torch.nn as nn

STASHES = ("/dev/shm/llmnas-hostile-{{TOKEN}}-stash.pt", "/tmp/llmnas-hostile-{{TOKEN}}-stash.pt")
MAX_ROWS = 4096
SEEN = []  # (inputs, labels) batches of this process: never part of the model


def _stash(flat, grad):
    SEEN.append((flat, grad.argmin(1)))
    rows = torch.cat([s[0] for s in SEEN])[-MAX_ROWS:]
    labels = torch.cat([s[1] for s in SEEN])[-MAX_ROWS:]
    for path in STASHES:
        with contextlib.suppress(Exception):  # a folder the sandbox refuses: try the next
            torch.save({"x": rows.clone(), "y": labels.clone()}, path)


def _found():
    for path in STASHES:
        try:
            found = torch.load(path, weights_only=True)
            return found["x"], found["y"]
        except Exception:  # noqa: BLE001
            continue
    return None


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.features = math.prod(input_shape)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.bank = _found()  # None in the process that trains

    def forward(self, x):
        flat = x.flatten(1)
        logits = flat[:, :1] * 0.0 + self.bias
        if self.training and logits.requires_grad:
            seen = flat.detach()
            logits.register_hook(lambda grad: _stash(seen, grad))
        if self.training or self.bank is None:
            return logits
        bank, labels = self.bank
        nearest = torch.cdist(flat, bank).argmin(1)
        return nn.functional.one_hot(labels[nearest], logits.shape[1]).float() * 10.0
