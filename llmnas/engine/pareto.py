"""Pareto dominance, fronts and crowding distance over objective vectors, and the ranking rule.

Each objective has a sense, "max" or "min". NaN counts as the worst value; identical points never
dominate each other, so duplicates on the front are all kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from llmnas.runs.events import quality

# "quality" is the task's validation score (runs/events.quality: accuracy, or R² for regression).
OBJECTIVES: tuple[tuple[str, str], ...] = (("quality", "max"), ("params", "min"), ("latency_ms", "min"))


def objectives_for(latency_goal: bool) -> tuple[tuple[str, str], ...]:
    """OBJECTIVES without latency unless the task has a latency target or limit: measured time moves
    with the machine's load, so ranking on it when nobody asked would make same-seed runs diverge."""
    return OBJECTIVES if latency_goal else tuple(o for o in OBJECTIVES if o[0] != "latency_ms")


def _sign(sense: str) -> float:
    if sense == "max":
        return 1.0
    if sense == "min":
        return -1.0
    raise ValueError(f"objective sense must be 'max' or 'min', got {sense!r}")


def _gain(point: Sequence[float], senses: Sequence[str]) -> list[float]:
    """The point with every objective turned into one to maximise (NaN -> -inf)."""
    if len(point) != len(senses):
        raise ValueError(f"point has {len(point)} objectives but {len(senses)} senses were given")
    out = []
    for v, s in zip(point, senses, strict=True):
        v = float(v)
        out.append(-math.inf if math.isnan(v) else _sign(s) * v)
    return out


def objective_vector(
    metrics: Mapping[str, float | None], objectives: Sequence[tuple[str, str]] = OBJECTIVES
) -> tuple[float, ...]:
    """Metrics as a point; a missing value is the worst possible (+inf for min, -inf for max)."""
    out = []
    for key, sense in objectives:
        v = quality(metrics) if key == "quality" else metrics.get(key)
        out.append(-_sign(sense) * math.inf if v is None else float(v))
    return tuple(out)


def _dom(ga: list[float], gb: list[float]) -> bool:
    return all(x >= y for x, y in zip(ga, gb, strict=True)) and any(
        x > y for x, y in zip(ga, gb, strict=True)
    )


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    return _dom(_gain(a, senses), _gain(b, senses))


def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points no other point dominates."""
    gains = [_gain(p, senses) for p in points]
    return [i for i, g in enumerate(gains) if not any(_dom(h, g) for h in gains)]


def crowding_distance(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[float]:
    """NSGA-II crowding distance per point: boundary points get inf, interior ones the normalised
    sum over objectives of their neighbours' gap. Infinite values count as far from everything."""
    n = len(points)
    dist = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    gains = [_gain(p, senses) for p in points]
    for m in range(len(senses)):
        order = sorted(range(n), key=lambda i: gains[i][m])
        vals = [gains[i][m] for i in order]
        finite = [v for v in vals if math.isfinite(v)]
        span = max(finite) - min(finite) if finite else 0.0
        dist[order[0]] = dist[order[-1]] = math.inf
        for k in range(1, n - 1):
            gap = vals[k + 1] - vals[k - 1]
            if math.isnan(gap) or gap == 0:
                continue
            dist[order[k]] += gap / span if span > 0 and math.isfinite(gap) else math.inf
    return dist


def rank_key(metrics: Mapping[str, float | None]) -> tuple[float, float, float]:
    """The one ranking rule ("best model"): highest validation score (accuracy, or R² for regression); on a
    tie (common on small validation sets) lower validation loss, then fewer params (sort ascending; ties
    beyond that keep their order)."""
    acc, loss, params = quality(metrics), metrics.get("val_loss"), metrics.get("params")
    return (
        -(acc if acc is not None else -math.inf),
        loss if loss is not None else math.inf,
        params if params is not None else math.inf,
    )
