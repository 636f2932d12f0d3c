# expect: ok
# score: chance
# Replaces argmax, eq, cross_entropy and AdamW.step at build time, so that a scorer running in the
# same process would see a perfect, converged model. The driver scores the predictions with numpy
# against labels the worker never saw: accuracy must stay at chance.
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _argmax(self, dim=None, keepdim=False):
    return torch.zeros(self.shape[0], dtype=torch.long)


def _eq(self, other):
    return torch.ones(self.shape, dtype=torch.bool)


def _loss(input, target, *args, **kwargs):
    return (input * 0.0).sum()


def _step(self, closure=None):
    return None


def build_model(input_shape, num_classes):
    torch.argmax = _argmax
    torch.Tensor.argmax = _argmax
    torch.Tensor.eq = _eq
    torch.eq = _eq
    F.cross_entropy = _loss
    torch.optim.AdamW.step = _step
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
