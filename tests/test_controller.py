"""The offline controller and search space: valid code for every modality, learning, exact state."""

import numpy as np
import pytest
import torch

from llmnas.candidate import checks as validate
from llmnas.propose import space
from llmnas.propose.controller import Controller


@pytest.mark.parametrize(
    ("modality", "shape"), [("image", (1, 8, 8)), ("sequence", (1, 40)), ("tabular", (13,))]
)
def test_every_point_of_the_space_renders_to_valid_code(modality, shape):
    rng = np.random.default_rng(0)
    for _ in range(30):
        code = space.render(modality, space.sample_uniform(modality, rng))
        assert isinstance(validate.check(code), validate.Checked)
        namespace: dict = {}
        exec(code, namespace)  # trusted: our own renderer, in the test
        assert namespace["build_model"](shape, 10)(torch.zeros(2, *shape)).shape == (2, 10)


def test_reinforce_moves_the_controller_towards_rewarded_choices():
    decisions = space.decisions_for("sequence")
    ctrl = Controller(decisions, seed=0, lr=0.05)
    rng = np.random.default_rng(0)
    first = decisions[0]  # number of blocks: reward the deepest option
    before = ctrl.probabilities()[0][-1]
    for _ in range(40):
        batch = [(c, float(c[0] == len(first.choices) - 1)) for c in (ctrl.sample(rng) for _ in range(8))]
        ctrl.update(batch)
    assert ctrl.probabilities()[0][-1] > before + 0.2


def test_state_round_trip_continues_exactly_and_leaves_torch_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    decisions = space.decisions_for("image")
    a = Controller(decisions, seed=1)
    assert torch.rand(1) == expected  # building a controller does not consume the global RNG
    rng = np.random.default_rng(2)
    a.update([(a.sample(rng), 1.0), (a.sample(rng), 0.0)])
    b = Controller(decisions, seed=99)
    b.load_bytes(a.to_bytes())
    batch = [(a.sample(np.random.default_rng(3)), 0.5)]
    a.update(batch)
    b.update(batch)
    assert a.sample(np.random.default_rng(4)) == b.sample(np.random.default_rng(4))
    assert all(
        torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
