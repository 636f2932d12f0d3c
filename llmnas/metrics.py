"""The metric rules, in one place so that the search, `show`, the report and exports agree: the validation
score that ranks (``quality``), the test scores that never steer, the ranking rule, the objectives and
their Pareto front, the reward of a failure, and scores as one line of text.

Pure functions of metrics as a mapping (name -> number); at the bottom of the import graph (the standard
library and sandbox/protocol.py only). In objective vectors each objective has a sense, "max" or "min";
NaN counts as the worst value, and identical points never dominate each other, so duplicates on the front
are all kept.

Failed candidates earn ``failure_reward(stage)``. The table is ordered so that getting further down the
evaluation cascade earns more, and every failure earns less than any passing candidate (>= 0):

    llm     -1.0   the model call failed (down, rate-limited, garbage)
    extract -1.0   no code in the reply
    static  -0.8   code rejected by the static checks
    build   -0.6   build_model raised
    shape   -0.5   wrong output shape
    crash   -0.3   the worker died
    train   -0.3   training raised or diverged
    export  -0.3   the trained model does not export to ONNX (the artifact that is scored)
    memory  -0.25  over the memory limit
    timeout -0.25  over the time limit
    duplicate -0.2 already evaluated (no new information)
    budget  -0.05  a working model over a hard limit (params, FLOPs, latency)
    proxy   -0.05  screened out by a zero-cost proxy before training
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sandbox.protocol import Stage

# The validation score that steers the search, by task: accuracy, or R² for regression.
QUALITY = ("val_acc", "val_r2")
# Test scores: reported only, never seen by anything that steers (prompts, traces, rewards, the archive).
REPORTED_ONLY = frozenset({"test_acc", "test_balanced_acc", "test_f1", "test_mae", "test_rmse", "test_r2"})
# "quality" is ``quality(metrics)``; the others are metric names.
OBJECTIVES: tuple[tuple[str, str], ...] = (("quality", "max"), ("params", "min"), ("latency_ms", "min"))

FAILURE_REWARDS: dict[Stage, float] = {
    Stage.llm: -1.0,
    Stage.extract: -1.0,
    Stage.static: -0.8,
    Stage.build: -0.6,
    Stage.shape: -0.5,
    Stage.crash: -0.3,
    Stage.train: -0.3,
    Stage.export: -0.3,
    Stage.memory: -0.25,
    Stage.timeout: -0.25,
    Stage.duplicate: -0.2,
    Stage.budget: -0.05,
    Stage.proxy: -0.05,
}


def quality(metrics: Mapping[str, Any]) -> float | None:
    """The validation score that ranks candidates (higher is better): accuracy, or R² for regression."""
    return next((v for k in QUALITY if (v := metrics.get(k)) is not None), None)


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


def failure_reward(stage: Stage | str) -> float:
    """The reward of a candidate that failed at ``stage`` (see the table in the module docstring)."""
    try:
        return FAILURE_REWARDS[Stage(stage)]
    except ValueError:
        raise ValueError(f"unknown failure stage {stage!r}; known: {', '.join(FAILURE_REWARDS)}") from None


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


def _dom(ga: Sequence, gb: Sequence) -> bool:
    return all(x >= y for x, y in zip(ga, gb, strict=True)) and any(
        x > y for x, y in zip(ga, gb, strict=True)
    )


def dominates(a: Sequence[float], b: Sequence[float], senses: Sequence[str]) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    return _dom(_gain(a, senses), _gain(b, senses))


def _undominated(gains: Sequence[Sequence]) -> list[int]:
    return [i for i, g in enumerate(gains) if not any(_dom(h, g) for h in gains)]


def pareto_front(points: Sequence[Sequence[float]], senses: Sequence[str]) -> list[int]:
    """Indices (ascending) of the points no other point dominates."""
    return _undominated([_gain(p, senses) for p in points])


def _ranked_gain(metrics: Mapping[str, Any], objectives: Sequence[tuple[str, str]]) -> list:
    """The metrics as gains to maximise, quality as (score, -validation loss): two equal scores compare by
    their loss, as ``rank_key`` does, so the model it ranks first is never dominated."""
    gains: list = _gain(objective_vector(metrics, objectives), [s for _, s in objectives])
    for i, (key, _) in enumerate(objectives):
        if key == "quality":
            loss = metrics.get("val_loss")
            tie = -math.inf if loss is None or math.isnan(loss) else -float(loss)
            gains[i] = (gains[i], tie)
    return gains


def metrics_dominate(
    a: Mapping[str, Any], b: Mapping[str, Any], objectives: Sequence[tuple[str, str]] = OBJECTIVES
) -> bool:
    """Whether metrics ``a`` dominate ``b`` over ``objectives``, quality compared as ``rank_key`` does."""
    return _dom(_ranked_gain(a, objectives), _ranked_gain(b, objectives))


def front(
    metrics: Sequence[Mapping[str, Any]], objectives: Sequence[tuple[str, str]] = OBJECTIVES
) -> list[int]:
    """Indices (ascending) of the metrics on the Pareto front over ``objectives`` (the archive's front),
    quality compared as ``rank_key`` does (``metrics_dominate``)."""
    return _undominated([_ranked_gain(m, objectives) for m in metrics])


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


def _f(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def scores_text(metrics: Mapping[str, Any], splits: tuple[str, ...] = ("val", "test")) -> str:
    """Scores in one line: "val 0.9812  test 0.9756" or, for regression, "val R² 0.512 MAE 43.1  test R²
    0.470 MAE 44.9" (``splits``: which of them)."""
    regression = any(metrics.get(f"{split}_r2") is not None for split in splits)
    return "  ".join(
        f"{split} R² {_f(metrics.get(f'{split}_r2'), '.3f')} MAE {_f(metrics.get(f'{split}_mae'), '.4g')}"
        if regression
        else f"{split} {_f(metrics.get(f'{split}_acc'), '.4f')}"
        for split in splits
    )
