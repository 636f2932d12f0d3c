"""Honest scoring: predictions and costs are the artifact's (model.onnx, written as training ends), measured
by a fresh process that runs no candidate code; every metric that crosses the boundary is bounded and
finite."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import FAST_TRAIN, GOOD_CNN, make_job
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from llmnas.engine.scoring import score as driver_score
from llmnas.execute.base import crash_result, verdict
from sandbox import graph, measure
from sandbox.protocol import MAX_COUNT, RESULT_FILE, Job, Metrics, Stage, TrainConfig

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


# --------------------------------------------------------------------------- the graph's figures
def _graph(nodes, initializers, shape=(4,)):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *shape])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    g = helper.make_graph(
        nodes, "g", [x], [y], [numpy_helper.from_array(a, n) for n, a in initializers.items()]
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_params_count_every_stored_number_with_no_exception_by_name():
    """Initializers of any name (a BatchNorm statistic too) and Constant nodes all count."""
    model = _graph(
        [
            helper.make_node(
                "Constant", [], ["memo"], value=numpy_helper.from_array(np.zeros((50, 4), np.float32))
            ),
            helper.make_node("Gemm", ["input", "w", "b"], ["h"], transB=1),
            helper.make_node("Add", ["h", "running_mean"], ["logits"]),
        ],
        {
            "w": np.zeros((2, 4), np.float32),
            "b": np.zeros(2, np.float32),
            "running_mean": np.zeros(2, np.float32),
        },
    )
    assert graph.problem(model, (4,)) is None
    assert graph.params(model) == 8 + 2 + 2 + 200
    assert graph.flops(model, (4,)) == 2 * 4 * 2  # one multiply-add per weight, at batch 1
    assert graph.depth(model) == 1


def test_flops_follow_the_shapes_the_graph_infers():
    """A Conv1d (3 -> 5 channels, kernel 3, 16 positions) then a MatMul on the flattened 80 values."""
    model = _graph(
        [
            helper.make_node("Conv", ["input", "k"], ["c"], pads=[1, 1]),
            helper.make_node("Flatten", ["c"], ["f"]),
            helper.make_node("MatMul", ["f", "w"], ["logits"]),
        ],
        {"k": np.zeros((5, 3, 3), np.float32), "w": np.zeros((80, 2), np.float32)},
        shape=(3, 16),
    )
    assert graph.flops(model, (3, 16)) == 2 * (5 * 16) * (3 * 3) + 2 * 2 * 80
    assert graph.depth(model) == 2 and graph.params(model) == 45 + 160


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda m: m.opset_import.append(helper.make_opsetid("com.microsoft", 1)), "non-standard"),
        (lambda m: setattr(m.graph.input[0].type.tensor_type.shape.dim[1], "dim_value", 9), "shaped"),
        (lambda m: m.graph.output.append(m.graph.output[0]), "one output"),
    ],
)
def test_a_graph_that_is_not_plain_standard_onnx_is_refused(change, said):
    model = _graph(
        [helper.make_node("Gemm", ["input", "w"], ["logits"], transB=1)], {"w": np.zeros((2, 4), np.float32)}
    )
    change(model)
    assert said in (graph.problem(model, (4,)) or ""), graph.problem(model, (4,))


# --------------------------------------------------------------------------- through the sandbox
def test_memory_kept_outside_the_weights_is_in_the_artifact_and_counted(run_candidate, digits, tmp_path):
    """This candidate's trained weights are biases; it remembers training pairs in a list attribute and
    answers as a nearest-neighbour classifier. The artifact is exported from the trained model, so the
    memory is a constant of the graph: it scores as the classifier it is, and every remembered number
    counts as a parameter (before, the scorer rebuilt it from code and weights: at chance, 10 params)."""
    code = (HOSTILE / "memorise_labels_in_attribute.py").read_text()
    result = run_candidate(code, tmp_path / "memo")
    assert result.ok, result.message
    scores = driver_score(tmp_path / "memo", digits)
    remembered = FAST_TRAIN.max_steps * FAST_TRAIN.batch_size  # inputs of every training step
    assert scores["val_acc"] > 0.8 and result.metrics.params >= remembered * math.prod(digits.input_shape)


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


# --------------------------------------------------------------------------- latency near a limit
def test_near_limit_is_the_spread_rule():
    assert measure.near_limit(1.0, 0.2, 1.1) and measure.near_limit(1.2, 0.2, 1.1)
    assert not measure.near_limit(1.0, 0.05, 1.1) and not measure.near_limit(1.0, 5.0, None)


def test_latency_is_measured_again_near_the_limit(monkeypatch):
    series = iter([[1.0, 1.2, 0.8, 1.1, 0.9], [1.3] * 15])
    monkeypatch.setattr(measure, "_timed_runs", lambda forward, runs, warmup: next(series))
    median, _, runs = measure.latency_ms(lambda: None, 5, limit=1.1)
    assert runs == 5 * (1 + measure.REMEASURE_FACTOR) and median == 1.3  # decided on all 20 runs
    series = iter([[1.0, 1.2, 0.8, 1.1, 0.9]])
    assert measure.latency_ms(lambda: None, 5, limit=9.0)[2] == 5  # far from the limit: one series


def test_predictions_in_the_result_folder_are_float32(run_candidate, digits, tmp_path):
    result = run_candidate(GOOD_CNN, tmp_path / "good")
    assert result.ok and result.metrics.latency_runs == 5 and result.metrics.peak_mem_mb >= 0
    val = np.load(tmp_path / "good" / "val_pred.npy", allow_pickle=False)
    assert val.dtype == np.float32 and val.shape == (len(digits.y_val), digits.num_classes)
