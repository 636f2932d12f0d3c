"""The learned accuracy predictor of ``--prescreen predictor``: a scikit-learn random forest fitted on the
run's own evaluations, from architecture features and zero-cost proxies to validation accuracy.

Features are what the sandbox's pre-screen measures before training: parameters, FLOPs, depth (weight
layers) and the zero-cost proxies in PROXIES (a failed proxy is a missing value, which the forest
handles). Trees need no scaling and are unchanged by monotone transforms, which suits counts that span
decades. The forest's seed is the run's, so the same evaluations give the same predictions.

Until MIN_EVALUATIONS trained candidates exist the predictor is not fitted and pre-screening ranks by
FALLBACK, the zero-cost score with the best Kendall tau in bench/RESULTS.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestRegressor

ARCHITECTURE = ("params", "flops", "depth")
PROXIES = ("synflow", "naswot", "grad_norm", "snip")  # computed in the sandbox for every candidate
FALLBACK = "flops"
MIN_EVALUATIONS = 8


def features(metrics: Mapping[str, Any]) -> list[float]:
    """One row of features from a metrics dict (an evaluation's or a pre-screen's); missing is NaN."""
    proxies = metrics.get("proxies") or {}
    values = [metrics.get(k) for k in ARCHITECTURE] + [proxies.get(k) for k in PROXIES]
    return [float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan for v in values]


def fallback_score(metrics: Mapping[str, Any]) -> float:
    """The FALLBACK score of a candidate (-inf when unknown): the ranking before the predictor is fitted."""
    v = metrics.get(FALLBACK)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else -math.inf


class AccuracyPredictor:
    """Validation accuracy from features; ``fit`` returns whether there was enough data to fit."""

    def __init__(self, seed: int, min_evaluations: int | None = None):
        self.seed = seed
        self.min_evaluations = MIN_EVALUATIONS if min_evaluations is None else min_evaluations
        self.model: RandomForestRegressor | None = None
        self.trained_on = 0

    def fit(self, examples: Sequence[tuple[Mapping[str, Any], float]]) -> bool:
        """Fit on (metrics, validation accuracy) pairs, in a fixed order (the caller sorts them)."""
        self.trained_on = len(examples)
        if len(examples) < self.min_evaluations:
            self.model = None
            return False
        x = np.array([features(m) for m, _ in examples])
        y = np.array([acc for _, acc in examples])
        from sklearn.ensemble import RandomForestRegressor  # here: a second of every driver's start-up

        self.model = RandomForestRegressor(
            n_estimators=200, min_samples_leaf=2, random_state=self.seed, n_jobs=1
        ).fit(x, y)
        return True

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def predict(self, metrics: Sequence[Mapping[str, Any]]) -> list[float]:
        """Predicted validation accuracy of each candidate (fit first)."""
        if self.model is None:
            raise RuntimeError("the predictor is not fitted yet")
        if not metrics:
            return []
        return [float(v) for v in self.model.predict(np.array([features(m) for m in metrics]))]
