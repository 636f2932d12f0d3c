"""Random search, the baseline of bench/search_efficiency.py and bench/search_table.py: uniform draws from
the space inside the default's limits, no parents, nothing learned, the same run for the same seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import logged
from test_resume import REQ, _trajectory

from llmnas.config import RunConfig
from llmnas.engine.archive import UNIFORM
from llmnas.engine.policy import Policy
from llmnas.propose.base import Action
from llmnas.propose.offline import OFFLINE_OPERATORS, OfflineProposer, RandomProposer
from llmnas.run import start
from llmnas.task.requirements import parse_requirements
from sandbox.protocol import TrainConfig


def test_uniform_policy_offers_everything_and_never_moves():
    policy = Policy.uniform()
    before = policy.probabilities()
    rng = np.random.default_rng(0)
    chosen = []
    for i in range(100 * len(OFFLINE_OPERATORS)):
        action = policy.choose(rng, OFFLINE_OPERATORS, ["width", "depth", f"new{i % 3}"])
        policy.update(action, 1.0 if action.operator == "mutate" else -1.0)  # a policy would learn this
        chosen.append(action)
    after = policy.probabilities()
    uniform = dict.fromkeys(after["operator"], 1 / len(after["operator"]))
    assert after["operator"] == before["operator"] == pytest.approx(uniform)
    assert after["selector"] == {UNIFORM: 1.0}
    assert len(set(after["variant"].values())) == 1, "a new variant started ahead of the others"
    counts = {op: sum(a.operator == op for a in chosen) for op in OFFLINE_OPERATORS}
    assert min(counts.values()) > 60, counts  # 100 each expected
    learning = Policy()
    for action in chosen:
        learning.choose(rng, OFFLINE_OPERATORS, ["width"])
        learning.update(action, 1.0 if action.operator == "mutate" else -1.0)
    assert learning.probabilities()["operator"]["mutate"] > 0.3, "the contrast: the default does learn"


def test_random_proposer_only_draws_and_learns_nothing():
    proposer = RandomProposer("image", seed=0)
    assert proposer.operators == ("generate",) and OfflineProposer("image", 0).operators == OFFLINE_OPERATORS
    spec = parse_requirements(REQ).resolve(input_shape=(1, 8, 8), num_classes=10, modality="image")
    untouched, rng = proposer.state()[1], np.random.default_rng(0)
    for i in range(4):
        proposal = proposer.propose(Action("generate"), [], spec, rng)
        proposer.learn(proposal, float(i))
        proposer.end_round(rng)
    assert proposer.state()[1] == untouched


def _run(tmp_path, name: str, seed: int = 1):
    cfg = RunConfig(
        requirements=REQ,
        data="digits",
        max_samples=300,
        budget=8,
        workers=2,
        seed=seed,
        strategy="random",
        train=TrainConfig(max_steps=20, eval_every=10),
    )
    return start(cfg, tmp_path / name, progress=False, announce=lambda _: None)


@pytest.mark.sandbox
def test_random_strategy_draws_uniformly_learns_nothing_and_repeats(tmp_path):
    first = _run(tmp_path, "a")
    events = logged(first.run_dir)
    proposals = [e for e in events if e["type"] == "proposal"]
    assert {p["operator"] for p in proposals} == {"generate"} and not any(p["parents"] for p in proposals)
    uniform = Policy.uniform().probabilities()["operator"]
    for r in (e for e in events if e["type"] == "round"):
        assert r["policy"]["operator"] == pytest.approx(uniform)
    state = json.loads((first.run_dir / "state.json").read_text())
    assert {v for _, v in state["policy"]["logits"]["operator"]} == {0.0}
    blob = (first.run_dir / state["blob"]).read_bytes()
    assert blob == RandomProposer("image", seed=1).state()[1], "the controller was trained"
    again = _run(tmp_path, "b")
    assert _trajectory(again.run_dir) == _trajectory(first.run_dir)
