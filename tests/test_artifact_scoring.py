"""Score the artifact, not the code (issue 29): attacks on a scoring phase that runs candidate code.

The contract these tests hold the sandbox to: training is the only phase that runs candidate Python and
it ends by exporting the trained model (eval mode) to ``model.onnx``; scoring runs that graph with
onnxruntime in a fresh process (fresh /tmp and /dev/shm, validation and test inputs only) and writes the
predictions, from which the driver computes accuracy; size, FLOPs and latency are the graph's
(``params`` = elements of its initializers and Constant tensors; ``latency_ms`` at batch 1 and
``latency_b64_ms`` per sample at batch 64, both held to the latency limit; single rows must give what
batches give); the supervisor records the SHA-256 of ``model.onnx`` and ``weights.safetensors`` as the
trainer exits (``Result.artifact_sha256``, ``Result.weights_sha256``).

Attack classes, one test each (the candidates are in tests/hostile/, but the batch-1 trick, whose
verdict the corpus headers cannot express, lives here):

a. ``test_scoring_cannot_read_the_training_data``: the scoring phase reads train_x/train_y beside its
   validation inputs and answers as a nearest-neighbour classifier with ten trained numbers.
b. ``test_training_cannot_hand_state_to_scoring_through_shared_folders``: the training process stashes
   what it saw in /dev/shm and /tmp, the scoring side picks it up.
c. ``test_the_batch_one_latency_trick_fails_the_limit``: forward answers a constant for one row and
   runs a deep network for a batch; only batch 1 was timed.
d. ``test_what_is_scored_is_the_shipped_graph``: a model that adds a trigger branch only while
   ``torch.onnx.is_in_onnx_export()``; the score must be the shipped model.onnx's.
e. ``test_costs_are_the_graph_s_whatever_the_candidate_rebinds``: scoring-time rebinding of the params
   counter, FLOP counter, latency and clock, and a weights file replaced after loading.

Every verdict is the driver's (``judge``: accuracy from the returned predictions against labels the
worker never saw), never the candidate's word that it ran.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from conftest import SANDBOX_LIMITS

from llmnas.config import RunConfig
from llmnas.engine.evaluation import judge
from llmnas.engine.scoring import accuracy
from llmnas.task.spec import TaskSpec
from sandbox.protocol import ONNX_FILE, ONNX_INPUT, WEIGHTS_FILE, TrainConfig

HOSTILE = Path(__file__).parent / "hostile"
CHANCE = 0.3  # 10 classes: chance is 0.1; 0.3 is four standard deviations above it on 41 samples
CFG = RunConfig(requirements="issue 29's attacks", data="digits", limits=SANDBOX_LIMITS)


def _hostile(name: str, data_dir: Path) -> str:
    """A corpus candidate with its placeholders filled as tests/test_sandbox.py fills them."""
    text = (HOSTILE / f"{name}.py").read_text()
    return text.replace("{{DATA_DIR}}", str(data_dir)).replace("{{TOKEN}}", uuid.uuid4().hex[:8])


def _judged(result, out: Path, digits, spec: TaskSpec | None = None):
    """The driver's verdict, as a search records it."""
    return judge(result, out, digits, spec or TaskSpec(), CFG)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tensor_elements(tensor) -> int:
    return math.prod(tensor.dims)


def graph_elements(graph) -> int:
    """Elements of every initializer (dense and sparse) and every Constant node's value in ``graph`` and
    its subgraphs: what the artifact carries."""
    total = sum(_tensor_elements(t) for t in graph.initializer)
    total += sum(_tensor_elements(s.values) for s in graph.sparse_initializer)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant":
                if attr.HasField("t"):
                    total += _tensor_elements(attr.t)
                elif attr.HasField("sparse_tensor"):
                    total += _tensor_elements(attr.sparse_tensor.values)
                elif attr.name in ("value_floats", "value_ints", "value_strings"):
                    total += len(attr.floats) + len(attr.ints) + len(attr.strings)
                elif attr.name in ("value_float", "value_int", "value_string"):
                    total += 1
            if attr.HasField("g"):
                total += graph_elements(attr.g)
            for sub in attr.graphs:
                total += graph_elements(sub)
    return total


def onnx_elements(path: Path) -> int:
    return graph_elements(onnx.load(str(path), load_external_data=False).graph)


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """The shipped graph run as users run it: onnxruntime, CPU, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {ONNX_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _returned(out: Path, name: str) -> Path:
    path = out / name
    assert path.is_file(), f"the worker returned no {name}: {sorted(p.name for p in out.iterdir())}"
    return path


# --------------------------------------------------------------------------- a: training data at scoring
def test_scoring_cannot_read_the_training_data(pool, digits, run_candidate, tmp_path):
    """Class a. The candidate trains ten biases; built again beside its trained weights (a scoring
    phase that runs its code) it loads the pool's train_x/train_y into a plain attribute and answers
    as a nearest-neighbour classifier. The score must be at chance, or the parameter count must include
    what the scored model embedded (the training inputs: every one of their numbers)."""
    out = tmp_path / "a"
    result = run_candidate(_hostile("scoring_reads_training_data", pool.data_dir), out)
    assert result.ok, f"{result.stage}: {result.message}"
    event = _judged(result, out, digits)
    assert event.ok, f"{event.stage}: {event.message}"
    m = event.metrics
    embedded = digits.x_train.size
    assert m.val_acc < CHANCE or m.params >= embedded, (
        f"a model of {digits.num_classes} trained numbers scored val_acc {m.val_acc:.2f} "
        f"(test {m.test_acc:.2f}) with params {m.params}: the scorer answered from the training data"
    )


# --------------------------------------------------------------------------- b: shared scratch folders
def test_training_cannot_hand_state_to_scoring_through_shared_folders(pool, digits, run_candidate, tmp_path):
    """Class b. While training, a gradient hook reads the labels back and stashes every (input, label)
    pair in /dev/shm and /tmp; a model built where the stash exists answers from it by nearest
    neighbour. Scoring in a fresh process with fresh folders that runs the exported graph sees nothing:
    chance, or a parameter count that includes a remembered bank (at least half the training inputs)."""
    out = tmp_path / "b"
    result = run_candidate(_hostile("scoring_shm_stash", pool.data_dir), out)
    assert result.ok, f"{result.stage}: {result.message}"
    event = _judged(result, out, digits)
    assert event.ok, f"{event.stage}: {event.message}"
    m = event.metrics
    bank = digits.x_train.size // 2
    assert m.val_acc < CHANCE or m.params >= bank, (
        f"a model of {digits.num_classes} trained numbers scored val_acc {m.val_acc:.2f} "
        f"(test {m.test_acc:.2f}) with params {m.params}: state crossed from training to scoring"
    )


# --------------------------------------------------------------------------- c: batch-1 latency trick
LATENCY_LIMIT_MS = 0.25
BATCH_ONE_TRICK = """
import torch
import torch.nn as nn


class Model(nn.Module):
    # One row (the batch the latency is timed at): a constant, in microseconds. A batch (the
    # predictions that are scored): twenty 64-channel 3x3 convolutions, about 95 MFLOP a sample.
    def __init__(self, input_shape, num_classes):
        super().__init__()
        c = input_shape[0]
        layers = []
        for _ in range(20):
            layers += [nn.Conv2d(c, 64, 3, padding=1), nn.ReLU()]
            c = 64
        self.deep = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))
        self.answer = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        if x.shape[0] == 1:
            return x.flatten(1)[:, :1] * 0.0 + self.answer
        return self.deep(x)
"""


def test_the_batch_one_latency_trick_fails_the_limit(digits, run_candidate, tmp_path):
    """Class c. Timed at batch 1 only, the constant path passes a tight latency limit while the deep
    network is what predicts. Timing the graph at batch 1 and per sample at batch 64, under one limit,
    and requiring single rows to match batched rows, it must fail: over the latency limit (either
    measure), a failed export, or the batch-consistency check (stage export or crash, naming batch)."""
    out = tmp_path / "c"
    train = TrainConfig(max_steps=3, batch_size=16, eval_every=3)
    result = run_candidate(BATCH_ONE_TRICK, out, train=train, max_latency_ms=LATENCY_LIMIT_MS)
    spec = TaskSpec(max_latency_ms=LATENCY_LIMIT_MS)
    if result.ok:
        m = result.metrics
        b64 = getattr(m, "latency_b64_ms", None)
        assert (m.latency_ms or 0.0) > LATENCY_LIMIT_MS or (b64 or 0.0) > LATENCY_LIMIT_MS, (
            f"the batch-1 trick passed the {LATENCY_LIMIT_MS} ms limit with latency_ms {m.latency_ms} "
            f"and latency_b64_ms {b64}"
        )
    event = _judged(result, out, digits, spec)
    assert not event.ok, (
        f"the batch-1 trick passed the {LATENCY_LIMIT_MS} ms limit: latency_ms {event.metrics.latency_ms}, "
        f"val_acc {event.metrics.val_acc}, latency_b64_ms {getattr(event.metrics, 'latency_b64_ms', None)}"
    )
    stage, message = str(event.stage), event.message
    over_limit = stage == "budget" and "latency" in message
    inconsistent = stage in ("export", "crash") and "batch" in message
    assert over_limit or inconsistent or stage == "export", f"{stage}: {message}"


# --------------------------------------------------------------------------- d: export-only behaviour
def test_what_is_scored_is_the_shipped_graph(pool, digits, run_candidate, tmp_path):
    """Class d. A linear model that negates its logits only while torch.onnx exports it: run as a module
    it is a fair classifier, the shipped graph is not. The recorded validation accuracy must be the
    accuracy of the returned model.onnx run with onnxruntime, and that file must be the one the
    supervisor hashed as the trainer exited."""
    out = tmp_path / "d"
    code = _hostile("export_only_trigger", pool.data_dir)
    result = run_candidate(code, out, train=TrainConfig(max_steps=30, eval_every=10))
    assert result.ok, f"{result.stage}: {result.message}"
    event = _judged(result, out, digits)
    assert event.ok, f"{event.stage}: {event.message}"
    graph = _returned(out, ONNX_FILE)
    x_val = digits.x_val.reshape(len(digits.x_val), *digits.input_shape)
    shipped = accuracy(onnx_logits(graph, x_val), digits.y_val)
    assert event.metrics.val_acc == shipped, (
        f"recorded val_acc {event.metrics.val_acc:.3f}, but the shipped model.onnx scores {shipped:.3f}: "
        "what was scored is not what ships"
    )
    recorded = getattr(result, "artifact_sha256", None)
    assert recorded == _sha256(graph), f"model.onnx hashes to {_sha256(graph)}, the result says {recorded}"
    weights = getattr(result, "weights_sha256", None)
    assert weights == _sha256(_returned(out, WEIGHTS_FILE)), f"weights hash {weights}"


# --------------------------------------------------------------------------- e: rebound counters
def test_costs_are_the_graph_s_whatever_the_candidate_rebinds(pool, digits, run_candidate, tmp_path):
    """Class e. The candidate rebinds the weights-file counter, the FLOP counter, the latency and depth
    measurements and the worker's clock wherever it is imported, and replaces weights.safetensors with
    a one-number file once its trained weights are loaded. params must be the element count of the
    returned graph's initializers and constants (counted here with onnx), FLOPs and latency the graph's,
    the energy the supervisor's clock's, and the weights file the one hashed as the trainer exited."""
    out = tmp_path / "e"
    result = run_candidate(_hostile("scoring_rebinds_counters", pool.data_dir), out)
    assert result.ok, f"{result.stage}: {result.message}"
    graph = _returned(out, ONNX_FILE)
    carried = onnx_elements(graph)
    weight = math.prod(digits.input_shape) * digits.num_classes  # the frozen weight: used, so carried
    assert carried >= weight, f"the graph carries {carried} numbers, fewer than the weight's {weight}"
    m = result.metrics
    assert m.params == carried, f"reported params {m.params}, the graph carries {carried}"
    event = _judged(result, out, digits)
    assert event.ok, f"{event.stage}: {event.message}"
    assert event.metrics.params == carried, (
        f"recorded params {event.metrics.params}, the graph carries {carried}"
    )
    assert m.flops >= weight, f"flops {m.flops} for a graph with a {weight}-element weight"
    assert m.latency_ms is not None and m.latency_ms > 0, f"latency {m.latency_ms}"
    assert event.metrics.energy_kwh < 1e-3, event.metrics
    weights = getattr(result, "weights_sha256", None)
    assert weights == _sha256(_returned(out, WEIGHTS_FILE)), f"weights hash {weights}"
    assert getattr(result, "artifact_sha256", None) == _sha256(graph)
