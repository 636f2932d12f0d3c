"""The decision-level search methods (propose/evolution.py) and their place in the offline proposer."""

from __future__ import annotations

import numpy as np
import pytest

from llmnas.propose import evolution, space
from llmnas.propose.base import Action
from llmnas.propose.offline import OfflineProposer
from llmnas.task.requirements import parse_requirements

SHAPE, CLASSES = (1, 8, 8), 10


NAMES = [d.name for d in space.decisions_for("image")]
HIDDEN = space.values(
    "image", evolution.canonical("image", space.sample_uniform("image", np.random.default_rng(99)))
)


def _objective(point) -> float:
    """A synthetic reward with one best point: the share of decisions that match a hidden point's."""
    v = space.values("image", evolution.canonical("image", point))
    return float(np.mean([v[n] == HIDDEN[n] for n in NAMES]))


def _search(op: str, seed: int, steps: int = 30) -> list[float]:
    """Rewards of ``steps`` proposals: 8 uniform samples, then ``op`` (or more samples)."""
    history, rng = evolution.History("image"), np.random.default_rng(seed)
    rewards = []
    for i in range(steps):
        point = (
            None
            if i < 8
            else evolution.METHODS[op](history, rng, lambda p: True)
            if op in evolution.METHODS
            else None
        )
        point = point or evolution.canonical("image", space.sample_uniform("image", rng))
        history.add(point, _objective(point))
        rewards.append(_objective(point))
    return rewards


def test_canonical_points_forget_the_blocks_a_model_does_not_have():
    names = [d.name for d in space.decisions_for("image")]
    point = [0] * len(names)
    point[names.index("blocks")] = 0  # one block (choices start at 1)
    point[names.index("channels3")] = 4  # a decision of block 3: not in the code
    assert evolution.canonical("image", tuple(point))[names.index("channels3")] == 0
    assert names.index("channels3") not in evolution.active("image", tuple(point))
    render = space.render("image", tuple(point))
    assert render == space.render("image", evolution.canonical("image", tuple(point)))


def test_neighbours_differ_in_one_decision_that_changes_the_code():
    point = evolution.canonical("image", space.sample_uniform("image", np.random.default_rng(3)))
    near = evolution.neighbours("image", point)
    assert near and len(set(near)) == len(near) and point not in near
    code = space.render("image", point)
    for other in near:
        assert space.render("image", other) != code


@pytest.mark.parametrize("op", evolution.METHODS)
def test_each_method_beats_uniform_sampling_on_a_structured_objective(op):
    """Over 6 seeds, the best reward after 30 proposals is higher than uniform sampling's on average
    (measured: evolve 0.62, local 0.74, predict 0.94, uniform 0.58)."""
    method = np.mean([max(_search(op, seed)) for seed in range(6)])
    uniform = np.mean([max(_search("uniform", seed)) for seed in range(6)])
    assert method > uniform, (op, method, uniform)


@pytest.mark.parametrize("op", evolution.METHODS)
def test_methods_propose_unseen_points_inside_the_limit_and_repeat_by_seed(op):
    fits = lambda p: space.param_count("image", p, SHAPE, CLASSES) <= 5_000  # noqa: E731
    runs = []
    for _ in range(2):
        history, rng = evolution.History("image"), np.random.default_rng(7)
        for _ in range(10):
            history.add(evolution.canonical("image", space.sample_uniform("image", rng)), float(rng.random()))
        point = evolution.METHODS[op](history, rng, fits)
        assert point is not None and not history.seen(point) and fits(point)
        runs.append(point)
    assert runs[0] == runs[1]


def test_the_offline_proposer_keeps_what_it_saw_across_a_resume():
    spec = parse_requirements("classify digits; under 20k parameters").resolve(
        input_shape=SHAPE, num_classes=CLASSES, modality="image"
    )
    proposer, rng = OfflineProposer("image", seed=0), np.random.default_rng(0)
    for op in ("generate",) * 8 + ("evolve", "local", "predict"):
        proposal = proposer.propose(Action(op), [], spec, rng)
        assert space.param_count("image", proposal.decisions, SHAPE, CLASSES) <= 20_000
        proposer.learn(proposal, _objective(proposal.decisions))
    meta, blob = proposer.state()
    again = OfflineProposer("image", seed=0)
    again.load_state(meta, blob)
    assert again.history.rows == proposer.history.rows and len(again.history.rows) == 11
    a, b = (p.propose(Action("predict"), [], spec, np.random.default_rng(1)) for p in (proposer, again))
    assert a.decisions == b.decisions


def test_operators_outside_the_offline_set_are_refused():
    with pytest.raises(ValueError, match="offline operators"):
        OfflineProposer("image", seed=0, operators=("evolve",))  # no generate: nothing to start from
    with pytest.raises(ValueError, match="offline operators"):
        OfflineProposer("image", seed=0, operators=("generate", "repair"))
