"""Reward: MnasNet-style accuracy x soft target terms; hard limits reject; failures earn a stage reward.

``R = acc * prod_i (m_i / T_i) ** w_i`` with ``w_i = spec.reward_alpha`` when ``m_i <= T_i`` and
``spec.reward_beta`` otherwise. ``acc`` is the validation score (accuracy, or R² floored at 0 for
regression). The terms are the spec's soft targets (target_params, target_latency_ms, and for
regression the MAE and RMSE floors, on validation). Hard limits (max_params, max_latency_ms, max_flops) reject in ``violations``
instead: MnasNet's hard-constraint weights (alpha 0 under the limit) add nothing to a passing
candidate, so being far under a hard limit earns no bonus over accuracy. A missing metric skips its term.

Failed candidates earn ``metrics.failure_reward(stage)``: less than any passing candidate (>= 0).
"""

from __future__ import annotations

import math

from llmnas.metrics import quality
from llmnas.task.spec import TaskSpec
from sandbox.protocol import over_limits

# A ratio m/T is floored here so an unmeasurably small metric (latency 0.0 ms) cannot blow up R.
_MIN_RATIO = 1e-3


def _value(metrics: dict, key: str) -> float | None:
    v = metrics.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def violations(metrics: dict, spec: TaskSpec) -> list[str]:
    """Hard limits of the spec the metrics break, as readable lines (sandbox/protocol.py's rule)."""
    return over_limits(metrics, spec.model_dump())


def targets(spec: TaskSpec) -> list[tuple[str, float]]:
    """The (metric, T_i) terms of the soft reward: the spec's soft targets only."""
    pairs = [
        ("params", spec.target_params),
        ("latency_ms", spec.target_latency_ms),
        ("val_mae", spec.floors.get("mae")),  # regression errors: lower is better, like size and latency
        ("val_rmse", spec.floors.get("rmse")),
    ]
    return [(k, float(t)) for k, t in pairs if t is not None]


def reward(metrics: dict, spec: TaskSpec) -> float:
    """MnasNet reward of a passing candidate (call ``violations`` first): the validation score (accuracy,
    or R² floored at 0 for regression) scaled by the soft targets."""
    acc = quality(metrics)
    if acc is None:
        raise ValueError("reward needs a validation score: score the predictions before the reward")
    r = max(0.0, float(acc))
    for key, t in targets(spec):
        m = _value(metrics, key)
        if m is None:
            continue
        w = spec.reward_alpha if m <= t else spec.reward_beta
        r *= max(m / t, _MIN_RATIO) ** w
    return r
