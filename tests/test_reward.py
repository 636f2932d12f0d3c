import math

import pytest

from llmnas.engine.reward import reward, violations
from llmnas.metrics import FAILURE_REWARDS, failure_reward
from llmnas.task.spec import TaskSpec
from sandbox.protocol import Stage


def test_known_value_under_target():
    spec = TaskSpec(target_params=20_000)
    assert reward({"val_acc": 0.9, "params": 10_000}, spec) == pytest.approx(0.9 * 0.5**-0.07)


def test_beta_applies_over_target():
    spec = TaskSpec(target_params=20_000, reward_alpha=0.0, reward_beta=-1.0)
    assert reward({"val_acc": 0.8, "params": 40_000}, spec) == pytest.approx(0.8 * 2.0**-1.0)
    assert reward({"val_acc": 0.8, "params": 10_000}, spec) == pytest.approx(0.8)


def test_soft_terms_multiply_and_hard_limits_add_no_bonus():
    spec = TaskSpec(target_params=20_000, target_latency_ms=2.0, max_params=40_000, max_latency_ms=4.0)
    m = {"val_acc": 0.9, "params": 10_000, "latency_ms": 1.0, "flops": 5}
    assert reward(m, spec) == pytest.approx(0.9 * 0.5**-0.07 * 0.5**-0.07)
    assert reward(m, TaskSpec(max_params=40_000, max_flops=10)) == pytest.approx(0.9)


def test_no_targets_is_accuracy_and_missing_metric_skips_term():
    assert reward({"val_acc": 0.7}, TaskSpec()) == pytest.approx(0.7)
    assert reward({"val_acc": 0.7, "latency_ms": None}, TaskSpec(target_latency_ms=1.0)) == pytest.approx(0.7)


def test_zero_metric_does_not_blow_up():
    r = reward({"val_acc": 0.5, "latency_ms": 0.0}, TaskSpec(target_latency_ms=1.0))
    assert math.isfinite(r) and r == pytest.approx(0.5 * 1e-3**-0.07)


def test_reward_needs_accuracy():
    with pytest.raises(ValueError, match="validation score"):
        reward({"params": 10}, TaskSpec())


def test_violations_are_readable():
    spec = TaskSpec(max_params=20_000, max_latency_ms=1.0, max_flops=1_000_000, max_bytes=90_000)
    fast = {"latency_b64_ms": 0.1, "model_bytes": 80_000}
    v = violations({"params": 25_300, "latency_ms": 1.5, "flops": 900_000} | fast, spec)
    assert v == ["params 25,300 > limit 20,000", "latency_ms 1.5 > limit 1 ms"]
    assert violations({"params": 20_000, "latency_ms": 1.0, "flops": 1_000_000} | fast, spec) == []
    assert violations({"params": 100}, spec) == [
        "model_bytes not measured (limit 90,000 bytes)",
        "flops not measured (limit 1,000,000)",
        "latency_ms not measured (limit 1 ms)",
        "latency_b64_ms not measured (limit 1 ms)",
    ]


def test_the_latency_limit_holds_at_batch_1_and_per_sample_at_batch_64_and_the_file_size_counts():
    """A graph fast for one sample and slow per sample in a batch breaks the limit; so does a file over
    the stated size, whatever its parameter count."""
    spec = TaskSpec(max_latency_ms=0.05, max_bytes=32_768)
    tricked = {"latency_ms": 0.008, "latency_b64_ms": 0.153, "model_bytes": 30_000}
    assert violations(tricked, spec) == ["latency_b64_ms 0.153 > limit 0.05 ms"]
    assert violations({"latency_ms": 0.01, "latency_b64_ms": 0.01, "model_bytes": 40_000}, spec) == [
        "model_bytes 40,000 > limit 32,768 bytes"
    ]
    assert violations({}, TaskSpec()) == []


def test_failure_table_order():
    cascade = ["extract", "static", "build", "shape", "train", "budget"]
    values = [failure_reward(s) for s in cascade]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert failure_reward("extract") == -1.0
    assert -0.1 <= failure_reward("budget") < 0
    for s in ("timeout", "memory", "crash"):
        assert failure_reward("shape") < failure_reward(s) < failure_reward("budget")
    assert failure_reward("duplicate") == pytest.approx(-0.2)
    assert all(v < 0 for v in FAILURE_REWARDS.values()) and set(FAILURE_REWARDS) == set(Stage)
    with pytest.raises(ValueError, match="unknown failure stage"):
        failure_reward("nope")
