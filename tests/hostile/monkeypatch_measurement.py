# expect: ok
# score: chance
# static: skip
# Rebinds the measuring functions at import, so that a scorer looking them up at call time would
# report a free model: time.perf_counter stands still (0 ms latency), statistics.median says 0,
# FlopCounterMode counts 1 FLOP, and nn.Module.parameters hides the frozen weight. The scorer bound
# them all before any candidate code ran, and counts parameters in the weights file: the reported
# latency, FLOPs and parameters are the honest ones (tests/test_scoring_honest.py checks them).
# Its only trained weights are biases: accuracy at chance.
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.utils.flop_counter as flop_counter

_parameters = nn.Module.parameters


def _trainable_only(self, recurse=True):
    return (p for p in _parameters(self, recurse) if p.requires_grad)


class _NoFlops(flop_counter.FlopCounterMode):
    def get_total_flops(self):
        return 1


time.perf_counter = lambda: 0.0
statistics.median = lambda data: 0.0
flop_counter.FlopCounterMode.get_total_flops = lambda self: 1
flop_counter.FlopCounterMode = _NoFlops
torch.utils.flop_counter.FlopCounterMode = _NoFlops
nn.Module.parameters = _trainable_only


def build_model(input_shape, num_classes):
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))
    with torch.no_grad():
        model[1].weight.zero_()
    model[1].weight.requires_grad_(False)
    return model
