"""Honest scoring: predictions and costs come from a fresh process that knows only the candidate's code
and its saved weights; every metric that crosses the boundary is bounded and finite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOOD_CNN, SANDBOX_LIMITS, make_job
from pydantic import ValidationError
from safetensors.torch import save_file, save_model

from llmnas.engine.scoring import score as driver_score
from llmnas.execute.base import crash_result, verdict
from sandbox import measure
from sandbox.candidate import CandidateFailure
from sandbox.protocol import MAX_COUNT, RESULT_FILE, Job, Metrics, Stage, TrainConfig
from sandbox.score import load_strict, stored_params

HOSTILE = Path(__file__).parent / "hostile"
CHANCE = 0.3


# --------------------------------------------------------------------------- bounded metrics
@pytest.mark.parametrize(
    ("metrics", "named"),
    [
        ('{"params": 1' + "0" * 400 + ', "flops": 1}', "metrics.params"),
        ('{"params": 1, "flops": 1, "latency_ms": -1}', "metrics.latency_ms"),
        ('{"params": 1, "flops": -5}', "metrics.flops"),
        ('{"params": 1, "flops": 1, "peak_mem_mb": NaN}', "metrics.peak_mem_mb"),
        ('{"params": 1, "flops": 1, "latency_ms": 1e999}', "metrics.latency_ms"),
        ('{"params": 1, "flops": 1, "proxies": {"synflow": Infinity}}', "metrics.proxies.synflow"),
        ('{"params": 1, "flops": 1, "holdout_acc": 7}', "metrics.holdout_acc"),
    ],
)
def test_a_forged_result_fails_the_candidate_and_names_the_value(tmp_path: Path, metrics: str, named: str):
    job = Job(candidate_id="forger", code="", data_dir=str(tmp_path), input_shape=(4,), num_classes=2, seed=0)
    (tmp_path / RESULT_FILE).write_text(f'{{"candidate_id": "forger", "ok": true, "metrics": {metrics}}}')
    result = verdict(job, tmp_path, lambda: crash_result(job, "no report"))
    assert not result.ok and result.stage == Stage.crash
    assert "invalid result" in result.message and named in result.message, result.message
    assert Stage.crash in (tmp_path / RESULT_FILE).read_text()  # the final result.json is the verdict


def test_metrics_accept_the_edges_and_missing_proxies():
    m = Metrics(params=MAX_COUNT, flops=0, latency_ms=0.0, proxies={"naswot": None, "snip": 1.5})
    assert m.params == 2**53 and m.proxies["naswot"] is None
    with pytest.raises(ValidationError, match="params"):
        Metrics(params=MAX_COUNT + 1, flops=0)


# --------------------------------------------------------------------------- strict weights
class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(3, 3, bias=False)
        self.head = torch.nn.Linear(3, 3, bias=False)
        self.head.weight = self.embed.weight
        self.norm = torch.nn.BatchNorm1d(3)


def test_weights_load_strictly_with_tied_tensors_and_count_from_the_file(tmp_path: Path):
    path = tmp_path / "w.safetensors"
    source = _Tied()
    save_model(source, str(path))
    target = _Tied()
    load_strict(target, path)
    assert torch.equal(target.embed.weight, source.embed.weight)
    assert stored_params(path) == 9 + 3 * 4 + 1  # one tied 3x3 tensor; BatchNorm's 4 tensors and its counter


@pytest.mark.parametrize(
    ("tensors", "said"),
    [
        (
            {"weight": torch.zeros(2, 3), "bias": torch.zeros(2), "memo": torch.zeros(100)},
            "unexpected ['memo']",
        ),
        ({"weight": torch.zeros(2, 3)}, "missing ['bias']"),
        ({"weight": torch.zeros(5, 3), "bias": torch.zeros(2)}, "cannot load"),
    ],
)
def test_weights_that_do_not_fit_the_model_fail_as_crash(tmp_path: Path, tensors: dict, said: str):
    path = tmp_path / "w.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(CandidateFailure) as failure:
        load_strict(torch.nn.Linear(3, 2), path)
    assert failure.value.stage == Stage.crash and said in str(failure.value), str(failure.value)


# --------------------------------------------------------------------------- through the sandbox
def test_memory_kept_outside_the_weights_does_not_reach_the_score(run_candidate, digits, tmp_path):
    """Predicting in the training process, this candidate scores ~0.9 on digits (its remembered
    training pairs answer as a nearest-neighbour classifier); from code and weights it is at chance."""
    code = (HOSTILE / "memorise_labels_in_attribute.py").read_text()
    result = run_candidate(code, tmp_path / "memo")
    assert result.ok, result.message
    scores = driver_score(tmp_path / "memo", digits, result.metrics.params)
    assert scores["val_acc"] < CHANCE and scores["test_acc"] < CHANCE, scores
    assert result.metrics.params == digits.num_classes  # the biases: the only tensors it saved


def test_monkeypatched_measurement_reports_the_honest_costs(run_candidate, digits):
    code = (HOSTILE / "monkeypatch_measurement.py").read_text()
    result = run_candidate(code)
    assert result.ok, result.message
    features = math.prod(digits.input_shape)
    m = result.metrics
    assert m.flops == 2 * features * digits.num_classes  # FlopCounterMode would have said 1
    assert m.params == features * digits.num_classes + digits.num_classes  # frozen weight included
    assert m.latency_ms > 0 and m.latency_runs == 5  # a stopped clock and median would say 0


def test_a_slow_candidate_fails_with_timeout_naming_the_step_budget(pool, digits, tmp_path):
    slow = (
        "import time\nimport torch.nn as nn\n\n\nclass Model(nn.Module):\n"
        "    def __init__(self, input_shape, num_classes):\n        super().__init__()\n"
        "        self.fc = nn.Linear(64, num_classes)\n\n"
        "    def forward(self, x):\n        time.sleep(0.05)\n        return self.fc(x.flatten(1))\n"
    )
    job = make_job(pool, digits, slow, train=TrainConfig(max_steps=500))
    result = pool.submit(job, tmp_path / "slow").result()
    assert not result.ok and result.stage == Stage.timeout, result
    assert "budget of 500 steps was not reached" in result.message and "--timeout" in result.message
    assert result.wall_seconds < SANDBOX_LIMITS.timeout_s


# --------------------------------------------------------------------------- latency near a limit
def test_near_limit_is_the_spread_rule():
    assert measure.near_limit(1.0, 0.2, 1.1) and measure.near_limit(1.2, 0.2, 1.1)
    assert not measure.near_limit(1.0, 0.05, 1.1) and not measure.near_limit(1.0, 5.0, None)


def test_latency_is_measured_again_near_the_limit(monkeypatch):
    series = iter([[1.0, 1.2, 0.8, 1.1, 0.9], [1.3] * 15])
    monkeypatch.setattr(measure, "_timed_runs", lambda model, x, runs, warmup: next(series))
    model, x = torch.nn.Linear(2, 2), torch.zeros(1, 2)
    median, _, runs = measure.latency_ms(model, x, 5, limit=1.1)
    assert runs == 5 * (1 + measure.REMEASURE_FACTOR) and median == 1.3  # decided on all 20 runs
    series = iter([[1.0, 1.2, 0.8, 1.1, 0.9]])
    assert measure.latency_ms(model, x, 5, limit=9.0)[2] == 5  # far from the limit: one series


def test_predictions_in_the_result_folder_are_float32(run_candidate, digits, tmp_path):
    result = run_candidate(GOOD_CNN, tmp_path / "good")
    assert result.ok and result.metrics.latency_runs == 5 and result.metrics.peak_mem_mb >= 0
    val = np.load(tmp_path / "good" / "val_pred.npy", allow_pickle=False)
    assert val.dtype == np.float32 and val.shape == (len(digits.y_val), digits.num_classes)
