"""Cost metrics of a built model: parameters, depth and latency at batch 1 (FLOPs: proxies)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from sandbox.protocol import BN_STATS

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.MultiheadAttention, nn.LSTM, nn.GRU, nn.RNN)


# Captured before any candidate runs, so a model overriding (or monkey-patching) them cannot hide weights.
_PARAMETERS, _BUFFERS = nn.Module.parameters, nn.Module.named_buffers


def count_params(model: nn.Module) -> int:
    """All parameters, trainable or frozen, plus buffers other than normalisation statistics."""
    n = sum(p.numel() for p in _PARAMETERS(model))
    return n + sum(b.numel() for name, b in _BUFFERS(model) if not name.endswith(BN_STATS))


def depth(model: nn.Module) -> int:
    """Number of weight layers: the depth descriptor of the archive."""
    return sum(isinstance(m, WEIGHT_LAYERS) for m in model.modules())


@torch.no_grad()
def latency_ms(model: nn.Module, example: torch.Tensor, runs: int, warmup: int = 5) -> tuple[float, float]:
    """Median and IQR of batch-1 forward time in ms, after warm-up; synchronised on CUDA."""
    model.eval()
    cuda = example.is_cuda
    times = []
    for i in range(warmup + runs):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(example)
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times), q[2] - q[0]
