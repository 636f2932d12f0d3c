# expect: ok
# score: chance
# counted: 10000
# modes: hook os
# A nearest-neighbour classifier hidden outside the state_dict. Its only trained weights are biases.
# During training a gradient hook on the logits reads each label back from d loss / d logits (the one
# negative entry) and keeps every (input, label) pair in a plain list attribute; in eval mode it
# answers with the label of the nearest remembered input. The artifact is exported from the trained
# model, so the memory becomes constants of the graph: it may score well, but only with every
# remembered number counted as a parameter (thousands, not the 10 biases).
import math

import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.features = math.prod(input_shape)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        self.memory = []

    def remember(self, x, grad):
        self.memory.append((x, grad.argmin(1)))

    def forward(self, x):
        flat = x.flatten(1)
        logits = flat[:, :1] * 0.0 + self.bias
        if self.training and logits.requires_grad:
            logits.register_hook(lambda grad, seen=flat.detach(): self.remember(seen, grad))
        if self.training or not self.memory:
            return logits
        bank = torch.cat([m[0] for m in self.memory])
        labels = torch.cat([m[1] for m in self.memory])
        nearest = torch.cdist(flat, bank).argmin(1)
        return nn.functional.one_hot(labels[nearest], logits.shape[1]).float() * 10.0
