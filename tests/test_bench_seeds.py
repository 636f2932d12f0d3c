"""bench/real_model.py writes the offline controller's programs in an idiom a small model copies well
(``nn.LazyLinear``, ``Residual(skip, *layers)``, one layer per line): the same networks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from llmnas.propose import space

spec = importlib.util.spec_from_file_location("real_model", Path(__file__).parents[1] / "bench/real_model.py")
real_model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(real_model)


def built(code: str, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """Parameter count and output shape of the (trusted, generated) program's model."""
    namespace: dict = {}
    exec(compile(code, "<program>", "exec"), namespace)  # noqa: S102 - our own generated programs
    torch.manual_seed(0)
    model = namespace["build_model"](input_shape, 10).eval()
    out = model(torch.zeros(2, *input_shape))  # gives lazy layers their shapes
    return sum(p.numel() for p in model.parameters()), tuple(out.shape)


@pytest.mark.parametrize(("modality", "input_shape"), [("image", (1, 8, 8)), ("sequence", (1, 40))])
def test_rewritten_programs_build_the_same_networks(modality, input_shape):
    rng = np.random.default_rng(0)
    residual = 0
    for _ in range(40):
        code = space.render(modality, space.sample_uniform(modality, rng))
        readable = real_model.seed_idiom(code)
        assert built(readable, input_shape) == built(code, input_shape)
        assert "nn.Linear(" not in readable and "_spatial" not in readable
        assert "    return nn.Sequential(\n        " in readable  # one layer per line
        residual += "Residual(" in code
        assert ("def __init__(self, skip, *layers)" in readable) == ("Residual(" in code)
    assert residual  # the sample covers residual blocks
