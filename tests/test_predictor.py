"""The learned accuracy predictor and ``--prescreen predictor``: fitted on the run's own evaluations,
deterministic, falling back to a proxy until it has enough, and refitted from the log on resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import logged
from scipy.stats import kendalltau

from llmnas.cli import main
from llmnas.config import RunConfig
from llmnas.engine import predictor
from llmnas.engine.evaluation import Evaluator
from llmnas.runs.events import EvaluationEvent, replay
from llmnas.runs.layout import RunLayout


def synthetic(n: int, seed: int) -> list[tuple[dict, float]]:
    """Candidates whose accuracy grows with log(params) and naswot, plus noise and a useless proxy."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        params = int(10 ** rng.uniform(2, 5))
        naswot = rng.uniform(0, 100)
        acc = 0.5 * math.log10(params) / 5 + 0.4 * naswot / 100 + rng.normal(0, 0.02)
        metrics = {
            "params": params,
            "flops": params * 3,
            "depth": int(rng.integers(2, 8)),
            "proxies": {"naswot": naswot, "synflow": float(rng.uniform()), "snip": None},
        }
        out.append((metrics, min(max(acc, 0.0), 1.0)))
    return out


def test_predictor_ranks_held_out_candidates_and_is_deterministic():
    train, held_out = synthetic(40, seed=1), synthetic(40, seed=2)
    a, b = predictor.AccuracyPredictor(seed=0), predictor.AccuracyPredictor(seed=0)
    assert a.fit(train) and b.fit(train)
    guesses = a.predict([m for m, _ in held_out])
    assert guesses == b.predict([m for m, _ in held_out])
    tau = kendalltau(guesses, [acc for _, acc in held_out]).statistic
    assert tau > 0.6, tau


def test_predictor_waits_for_enough_evaluations():
    p = predictor.AccuracyPredictor(seed=0)
    assert not p.fit(synthetic(predictor.MIN_EVALUATIONS - 1, seed=0)) and not p.fitted
    with pytest.raises(RuntimeError, match="not fitted"):
        p.predict([{}])


def test_prescreen_predictor_falls_back_then_predicts_and_refits_the_same_from_the_log(tmp_path, monkeypatch):
    monkeypatch.setattr(predictor, "MIN_EVALUATIONS", 4)  # fitted from the third round of four proposals
    out = tmp_path / "run"
    args = ["--data", "digits", "--max-samples", "300", "--steps", "40", "--budget", "12", "--workers", "2"]
    argv = ["search", "classify; under 20k parameters", *args, "--prescreen", "predictor", "--out", str(out)]
    assert main([*argv, "--json"]) == 0
    evaluations = [e for e in logged(out) if e["type"] == "evaluation"]
    screened = [e for e in evaluations if e["stage"] == "proxy"]
    assert {e["round"] for e in screened} == {0, 1, 2}
    for e in screened:
        fitted = e["round"] == 2
        assert ("predictor not fitted yet" in e["message"]) is not fitted
        assert (e["metrics"].get("predicted_acc") is not None) is fitted
        assert set(predictor.PROXIES) <= set(e["metrics"]["proxies"])
    late = [e for e in evaluations if e["round"] == 2 and e["stage"] != "budget"]  # budget: failed its screen
    cut = max(e["metrics"]["predicted_acc"] for e in late if e["stage"] == "proxy")
    kept = [e for e in late if e["stage"] != "proxy"]
    assert kept and all(e["metrics"]["predicted_acc"] >= cut for e in kept)

    # Resume holds no predictor state: it refits on the log's earlier rounds and guesses the same.
    done = {e.candidate_id: e for e in replay(RunLayout(out).events).of(EvaluationEvent)}
    cfg = RunConfig.from_settings(requirements="x", prescreen="predictor")
    evaluator = Evaluator(cfg, None, None, None, None, done, None)
    screens = {i: done[e["candidate_id"]].metrics.model_dump() for i, e in enumerate(late)}
    _, scores, _ = evaluator._scores(2, screens)
    assert [scores[i][0] for i in screens] == pytest.approx([e["metrics"]["predicted_acc"] for e in late])
