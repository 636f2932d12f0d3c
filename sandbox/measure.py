"""Cost figures: a built model's parameters and depth (the training process's screen before it trains),
and the latency of a forward call (the scoring process, on the artifact).

Everything a measurement calls is bound when this module is imported, before any candidate code
runs in the process, so a candidate that rebinds ``time.perf_counter`` or ``statistics.median`` (or
overrides ``nn.Module.parameters``) changes nothing here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from torch import nn

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.MultiheadAttention, nn.LSTM, nn.GRU, nn.RNN)
REMEASURE_FACTOR = 3  # runs added, as a multiple of the first series, when the limit is in the spread

_PARAMETERS, _BUFFERS, _MODULES = nn.Module.parameters, nn.Module.named_buffers, nn.Module.modules
_CLOCK, _MEDIAN, _QUANTILES = time.perf_counter, statistics.median, statistics.quantiles


def count_params(model: nn.Module) -> int:
    """Every number the model carries: all parameters, trainable or frozen, and all buffers (no exception by
    name: a buffer called running_mean can hold anything)."""
    return sum(p.numel() for p in _PARAMETERS(model)) + sum(b.numel() for _, b in _BUFFERS(model))


def depth(model: nn.Module) -> int:
    """Number of weight layers: the depth descriptor of the archive."""
    return sum(isinstance(m, WEIGHT_LAYERS) for m in _MODULES(model))


def spread(times: list[float]) -> tuple[float, float]:
    """Median and interquartile range of a series."""
    q = _QUANTILES(times, n=4) if len(times) > 1 else [times[0]] * 3
    return _MEDIAN(times), q[2] - q[0]


def near_limit(median: float, iqr: float, limit: float | None) -> bool:
    """Whether a latency limit lies within the measurement's spread: ``|median - limit| <= iqr``.

    Then the pass/fail verdict could flip on a re-run under another load, so the caller measures
    again (``REMEASURE_FACTOR`` times as many runs) and decides on the median of all runs. Far from
    the limit one series decides; the verdict is always ``median <= limit``."""
    return limit is not None and abs(median - limit) <= iqr


def _timed_runs(forward: Callable[[], object], runs: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + runs):
        t0 = _CLOCK()
        forward()
        if i >= warmup:
            times.append((_CLOCK() - t0) * 1000)
    return times


def latency_ms(
    forward: Callable[[], object], runs: int, warmup: int = 5, limit: float | None = None
) -> tuple[float, float, int]:
    """Median and IQR of ``forward()``'s time in ms after warm-up, and the number of timed runs: more
    than ``runs`` when the median was near ``limit`` (see near_limit)."""
    times = _timed_runs(forward, runs, warmup)
    median, iqr = spread(times)
    if near_limit(median, iqr, limit):
        times += _timed_runs(forward, runs * REMEASURE_FACTOR, 0)
        median, iqr = spread(times)
    return median, iqr, len(times)
