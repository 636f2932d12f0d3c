"""libcst mutations on several styles of model code. Tests may exec this trusted sample code; the library never does."""

from __future__ import annotations

import libcst as cst
import numpy as np
import pytest
import torch

from llmnas.candidate.mutate import MUTATIONS, MutationError, applicable, mutate

NUM_CLASSES = 10

CNN = """\
# a small CNN for 8x8 images
import torch
from torch import nn


def build_model(input_shape, num_classes):
    # feature extractor, then a linear head
    model = nn.Sequential(
        nn.Conv2d(input_shape[0], 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),  # keeps the shape
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(in_channels=16, out_channels=32, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, num_classes),  # head
    )
    return model
"""

ATTRIBUTE = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


class Model(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(input_shape[0], 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(in_channels=16, out_channels=16, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        # two convolutions, then two linear layers
        x = F.relu(self.conv1(x))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(x.size(0), 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        return self.fc2(x)
"""

CONV1D = """\
import torch.nn as nn


def build_model(input_shape, num_classes):
    # 1-D signal of length 40
    return nn.Sequential(
        nn.Conv1d(input_shape[0], 16, 5, padding=2), nn.GELU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 3, padding=1), nn.BatchNorm1d(32), nn.GELU(),
        nn.Conv1d(32, 32, 3, padding=1), nn.GELU(), nn.MaxPool1d(2),
        nn.Flatten(),
        nn.Linear(320, num_classes),
    )
"""

MLP = """\
from torch import nn


def build_model(input_shape, num_classes):
    # tabular features
    layers = [nn.Linear(input_shape[0], 64), nn.SiLU()]
    layers += [nn.Linear(64, 64), nn.SiLU(), nn.Dropout(0.1)]
    layers.append(nn.Linear(64, num_classes))
    return nn.Sequential(*layers)
"""

# Renderer style: a Residual class of its own with another signature, and widths passed to it.
RENDERED = '''\
import torch.nn as nn


class Residual(nn.Module):
    """x + body(x), with a 1x1 projection when the channel count changes."""

    def __init__(self, body, channels_in, channels_out, conv):
        super().__init__()
        self.body = body
        self.skip = nn.Identity() if channels_in == channels_out else conv(channels_in, channels_out, 1)

    def forward(self, x):
        return self.skip(x) + self.body(x)


def build_model(input_shape, num_classes):
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 12, 3, padding=1), nn.ReLU(),
        Residual(nn.Sequential(nn.Conv2d(12, 24, 3, padding=1), nn.ReLU()), 12, 24, nn.Conv2d),
        nn.Conv2d(24, 24, 5, padding=2), nn.ReLU(),
        nn.Conv2d(24, 24, 3, padding=1, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(24, num_classes),
    )
'''

# name -> (code, input shape, comments that no mutation may drop, expected applicable mutations)
SAMPLES = {
    "cnn": (CNN, (1, 8, 8), ("# a small CNN", "# feature extractor", "# head"), MUTATIONS),
    "attribute": (ATTRIBUTE, (1, 8, 8), ("# two convolutions",), MUTATIONS),
    "conv1d": (CONV1D, (1, 40), ("# 1-D signal",), MUTATIONS),
    "mlp": (MLP, (12,), ("# tabular",), ("width", "depth", "residual", "norm", "activation", "dropout")),
    "rendered": (RENDERED, (3, 8, 8), (), MUTATIONS),
}


def build(code: str, input_shape: tuple[int, ...]) -> torch.Tensor:
    namespace: dict = {}
    exec(compile(code, "<candidate>", "exec"), namespace)  # trusted test samples only
    if "build_model" in namespace:
        model = namespace["build_model"](input_shape, NUM_CLASSES)
    else:
        model = namespace["Model"](input_shape, NUM_CLASSES)
    model.eval()
    with torch.no_grad():
        return model(torch.randn(3, *input_shape))


@pytest.mark.parametrize("name", SAMPLES)
def test_samples_build_before_mutation(name):
    code, shape, _, _ = SAMPLES[name]
    assert build(code, shape).shape == (3, NUM_CLASSES)


@pytest.mark.parametrize("name", SAMPLES)
def test_applicable(name):
    code, _, _, expected = SAMPLES[name]
    assert applicable(code) == expected


@pytest.mark.parametrize("name", SAMPLES)
def test_every_applicable_mutation_builds(name):
    code, shape, comments, _ = SAMPLES[name]
    for kind in applicable(code):
        for seed in range(6):
            new, what = mutate(code, kind, np.random.default_rng(seed))
            assert new != code, (kind, seed)
            assert what.startswith(f"{kind}: ") and "\n" not in what
            cst.parse_module(new)
            for comment in comments:
                assert comment in new, (kind, seed, comment)
            assert build(new, shape).shape == (3, NUM_CLASSES), (kind, seed, what, new)


@pytest.mark.parametrize("name", SAMPLES)
def test_chains_of_mutations_still_build(name):
    code, shape, _, _ = SAMPLES[name]
    for seed in range(3):
        rng = np.random.default_rng(seed)
        current = code
        for _ in range(8):
            kinds = applicable(current)
            current, what = mutate(current, kinds[int(rng.integers(len(kinds)))], rng)
            assert build(current, shape).shape == (3, NUM_CLASSES), (seed, what, current)


def test_deterministic_by_seed_and_seeds_vary():
    for kind in MUTATIONS:
        outputs = {mutate(CNN, kind, np.random.default_rng(seed)) for seed in range(8)}
        for seed in range(3):
            assert mutate(CNN, kind, np.random.default_rng(seed)) == mutate(
                CNN, kind, np.random.default_rng(seed)
            )
        if kind not in ("residual", "activation"):  # one site; one family with three targets
            assert len(outputs) > 1, kind


def test_width_scales_every_tied_size():
    new, what = mutate(CNN, "width", np.random.default_rng(0))
    old, _, rest = what.removeprefix("width: ").partition(" -> ")
    size = int(rest.split()[0])
    if old == "32":
        assert f"out_channels={size}" in new and f"nn.Linear({size} * 4 * 4, num_classes)" in new
    else:
        assert f"nn.BatchNorm2d({size})" in new and f"nn.Conv2d({size}, {size}, 3, padding=1)" in new
    assert size % 4 == 0


def test_width_skips_the_classifier_and_input_sizes():
    code = "import torch.nn as nn\nmodel = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 10))\n"
    for seed in range(6):
        new, what = mutate(code, "width", np.random.default_rng(seed))
        assert what.startswith("width: 64 -> ") and "nn.Linear(20, " in new and new.endswith(", 10))\n")


def test_kernel_keeps_same_padding():
    code = "import torch.nn as nn\nlayer = nn.Conv1d(8, 8, kernel_size=(3,), padding=(1,))\n"
    for seed in range(6):
        new, what = mutate(code, "kernel", np.random.default_rng(seed))
        k = int(what.split(" -> ")[1].split()[0])
        assert f"kernel_size=({k},), padding=({k // 2},)" in new
    pointwise = "import torch.nn as nn\nlayer = nn.Conv2d(8, 8, 1)\n"
    new, what = mutate(pointwise, "kernel", np.random.default_rng(0))
    k = int(what.split(" -> ")[1].split()[0])
    assert new.endswith(f"nn.Conv2d(8, 8, {k}, padding={k // 2})\n")


def test_residual_helper_added_once_and_reused():
    once, _ = mutate(CNN, "residual", np.random.default_rng(0))
    twice = mutate(mutate(once, "depth", np.random.default_rng(4))[0], "residual", np.random.default_rng(1))[
        0
    ]
    assert once.count("class Residual(nn.Module)") == 1
    assert twice.count("class Residual(nn.Module)") == 1
    rendered, _ = mutate(RENDERED, "residual", np.random.default_rng(0))
    assert "class Residual2(nn.Module)" in rendered and "Residual2(" in rendered.split("def build_model")[1]


def test_activation_swaps_modules_and_functions():
    new, what = mutate(ATTRIBUTE, "activation", np.random.default_rng(0))
    assert "F.relu" not in new and what.endswith("(3 sites)")
    inplace = "import torch.nn as nn\nact = nn.ReLU(inplace=True)\n"
    new, _ = mutate(inplace, "activation", np.random.default_rng(0))
    assert "inplace" not in new and new.endswith("()\n")


def test_imports_torch_nn_when_code_has_no_alias():
    code = "from torch.nn import Conv2d, Sequential, ReLU\nnet = Sequential(Conv2d(1, 8, 3), ReLU(), Conv2d(8, 4, 1))\n"
    new, _ = mutate(code, "norm", np.random.default_rng(0))
    assert "import torch.nn as nn" in new and "nn.BatchNorm2d(8)" in new


def test_mutation_error_when_no_site():
    mlp = SAMPLES["mlp"][0]
    with pytest.raises(MutationError):
        mutate(mlp, "kernel", np.random.default_rng(0))
    plain = "def build_model(input_shape, num_classes):\n    return None\n"
    assert applicable(plain) == ()
    for kind in MUTATIONS:
        with pytest.raises(MutationError):
            mutate(plain, kind, np.random.default_rng(0))


def test_bad_input():
    assert applicable("def (:") == ()
    with pytest.raises(MutationError):
        mutate("def (:", "width", np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown mutation"):
        mutate(CNN, "shuffle", np.random.default_rng(0))
