"""The learned accuracy predictor and ``--prescreen predictor``: fitted on the run's own evaluations,
deterministic, falling back to a proxy until it has enough, and refitted from the log on resume."""

from __future__ import annotations

import math
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from conftest import logged
from scipy.stats import kendalltau

from llmnas.cli import main
from llmnas.config import RunConfig
from llmnas.engine import predictor
from llmnas.engine.evaluation import Evaluator
from llmnas.run import resume, start
from llmnas.runs.events import EvaluationEvent, Metrics
from llmnas.runs.store import RunStore
from llmnas.task.spec import TaskSpec
from sandbox.protocol import Metrics as ScreenMetrics
from sandbox.protocol import Result, Stage


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


ARGS = ["--data", "digits", "--max-samples", "300", "--steps", "40", "--budget", "12", "--workers", "2"]
REQ = "classify; under 20k parameters"


class _KilledAt:
    """A system clock that stops the run at its ``n``-th reading, as a kill would: the evaluation being
    recorded then is lost and the rest of the round is left to resume."""

    def __init__(self, n: int):
        self.readings, self.n = 0, n

    def now(self) -> float:
        self.readings += 1
        if self.readings == self.n:
            raise KeyboardInterrupt
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _outcomes(run) -> list[tuple]:
    """What the pre-screen decided and what training measured, in a fixed order."""
    return sorted(
        (
            e["round"],
            e["candidate_id"],
            e["stage"],
            e["metrics"].get("predicted_acc"),
            e["metrics"].get("val_acc"),
        )
        for e in logged(run)
        if e["type"] == "evaluation"
    )


@pytest.mark.sandbox
@pytest.mark.long
def test_prescreen_predictor_falls_back_then_predicts_and_resumes_the_same(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predictor, "MIN_EVALUATIONS", 4)  # fitted from the third round of four proposals
    out = tmp_path / "run"
    assert main(["search", REQ, *ARGS, "--prescreen", "predictor", "--out", str(out), "--json"]) == 0
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

    # Killed in the first predicted round, then resumed: no predictor state is saved, it is refitted on
    # the log's earlier rounds and the run ends as the uninterrupted one did.
    cfg = RunConfig.from_settings(
        requirements=REQ,
        data="digits",
        max_samples=300,
        steps=40,
        budget=12,
        workers=2,
        prescreen="predictor",
    )
    # The evaluator reads the clock once per event it records and once more per trained candidate: stop
    # at the end of the second candidate trained in round 2, after its screened-out ones were recorded.
    readings = sum(1 + (e["wall_seconds"] > 0) for e in evaluations if e["round"] < 2)
    screened_out = sum(e["wall_seconds"] == 0 for e in evaluations if e["round"] == 2)
    killed = _KilledAt(readings + screened_out + 3)
    with pytest.raises(KeyboardInterrupt):
        start(cfg, tmp_path / "killed", progress=False, announce=lambda _: None, clock=killed)
    interrupted = [e for e in logged(tmp_path / "killed") if e["type"] == "evaluation"]
    assert any(e["round"] == 2 for e in interrupted) and len(interrupted) < len(evaluations)
    resume(tmp_path / "killed", progress=False, announce=lambda _: None)
    assert _outcomes(tmp_path / "killed") == _outcomes(out)


class _ScreenOnly:
    """An executor that only screens: a candidate's code names its measured metrics (None: build fails)."""

    data_dir = Path("unused")
    device = "cpu"

    def __init__(self, screens: dict[str, dict | None]):
        self.screens = screens

    def submit(self, job, out_dir) -> Future:
        metrics = self.screens[job.code]
        future: Future = Future()
        future.set_result(
            Result(
                candidate_id=job.candidate_id,
                ok=metrics is not None,
                stage=None if metrics else Stage.build,
                message="" if metrics else "no luck",
                metrics=ScreenMetrics(**metrics) if metrics else None,
            )
        )
        return future


def test_a_resumed_round_ranks_the_same_candidates_as_before(tmp_path, monkeypatch, digits):
    """Killed after the screen's verdicts were logged: the resumed round screens again the candidate whose
    screen failed (the log holds no proxies for it) instead of ranking it on nothing, so the same one goes
    on to training."""
    monkeypatch.setattr(predictor, "MIN_EVALUATIONS", 4)
    cfg = RunConfig.from_settings(requirements="x", prescreen="predictor", workers=1)
    history = {
        f"h{i}": EvaluationEvent(
            round=0, candidate_id=f"h{i}", ok=True, metrics=Metrics(**m, val_acc=acc), reward=acc
        )
        for i, (m, acc) in enumerate(synthetic(8, seed=3))
    }
    screens = {f"code-{cid}": m for cid, (m, _) in zip("bc", synthetic(2, seed=4), strict=True)} | {
        "code-a": None
    }
    store = RunStore.create(tmp_path / "run", {}, "x")

    def kept_after_screen(done: dict) -> dict:
        evaluator = Evaluator(cfg, TaskSpec(), digits, _ScreenOnly(screens), store, done, iter)
        todo = {i: (cid, f"code-{cid}") for i, cid in enumerate("abc")}
        evaluator._prescreen(1, todo)
        return todo

    fresh = kept_after_screen(dict(history))
    logged_so_far = {e.candidate_id: e for e in store.replay().of(EvaluationEvent)}
    assert sorted(logged_so_far) == ["a", sorted(set("bc") - {c for c, _ in fresh.values()})[0]]
    assert kept_after_screen(history | logged_so_far) == fresh
    assert len(store.replay().of(EvaluationEvent)) == 2  # nothing logged twice
