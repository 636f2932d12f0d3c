"""Shift augmentation in the worker's training loop: what moves, by how much, and where it is the default."""

import pytest
import torch
from torch import nn

from llmnas.config import RunConfig
from sandbox.protocol import TrainConfig
from sandbox.train import shifted, train


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sequences_move_whole_within_reach_and_fill_with_zeros():
    x = torch.arange(1, 41, dtype=torch.float32).repeat(64, 1, 1)  # (64, 1, 40): 1..40, no zeros
    out = shifted(x, 0.125, _gen())
    assert out.shape == x.shape
    offsets = set()
    for row in out[:, 0]:
        kept = row[row != 0]
        offset = 40 - len(kept) if row[0] == 0 else 1 - int(kept[0].item())  # right +, left -
        # the surviving values are one contiguous run of the original, in order
        assert torch.equal(kept, torch.arange(kept[0].item(), kept[0].item() + len(kept)))
        assert len(kept) >= 35  # at most 40 / 8 = 5 positions lost
        offsets.add(offset)
    assert offsets == set(range(-5, 6))  # random per sample, every offset within reach


def test_images_move_along_both_axes_by_at_least_one_pixel():
    x = torch.zeros(200, 1, 8, 8)
    x[:, 0, 3, 4] = 1.0  # one lit pixel
    out = shifted(x, 0.125, _gen(1))
    rows, cols = set(), set()
    for img in out[:, 0]:
        lit = img.nonzero().tolist()
        assert len(lit) == 1  # never lost: 8 / 8 = one pixel of reach
        rows.add(lit[0][0])
        cols.add(lit[0][1])
    assert rows == {2, 3, 4} and cols == {3, 4, 5}


def test_channels_move_together_and_tabular_inputs_are_untouched():
    x = torch.randn(16, 3, 20)
    x[:, 1] = x[:, 0] * 2
    out = shifted(x, 0.2, _gen())
    assert torch.allclose(out[:, 1], out[:, 0] * 2)
    tab = torch.randn(16, 10)
    assert torch.equal(shifted(tab, 0.5, _gen()), tab)


def _fit(x: torch.Tensor, shift: float | None) -> torch.Tensor:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 3))
    y = torch.arange(len(x)) % 3
    train(model, x, y, TrainConfig(max_steps=20, eval_every=10, shift=shift), _gen(), torch.device("cpu"))
    return model[1].weight.detach().clone()


@pytest.mark.parametrize(
    "shape,shifted_by_default", [((60, 1, 8, 8), True), ((60, 1, 40), False), ((60, 12), False)]
)
def test_the_default_shifts_images_only(shape, shifted_by_default):
    x = torch.randn(*shape)
    unset, off = _fit(x, None), _fit(x, 0.0)
    assert torch.equal(unset, off) is not shifted_by_default
    if shifted_by_default:
        assert torch.equal(unset, _fit(x, 0.125))


def test_shift_is_a_run_setting_with_bounds():
    assert RunConfig.from_settings(requirements="x", shift=0.25).train.shift == 0.25
    with pytest.raises(ValueError, match="shift"):
        RunConfig.from_settings(requirements="x", shift=0.9)
