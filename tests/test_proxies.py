import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sandbox.proxies import PROXIES, compute_proxies, count_flops

GRAD_PROXIES = ("synflow", "grad_norm", "snip")


class ResidualBN(nn.Module):
    """Conv2d + BatchNorm + a residual block with a functional ReLU + Dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        return self.head(F.relu(h + self.bn(self.conv(h))))


def conv2d_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def conv1d_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(1, 8, 5),
        nn.ReLU(),
        nn.Conv1d(8, 8, 3),
        nn.GELU(),
        nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def mlp(width: int = 128) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


class Conv1dOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(1, 8, 5)
        self.c2 = nn.Conv1d(8, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.c1(x))).mean(-1)


def batch(shape: tuple[int, ...], n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn((n, *shape), generator=g), torch.randint(0, 10, (n,), generator=g)


def bn1d_mlp(track_running_stats: bool = True) -> nn.Module:
    bn = nn.BatchNorm1d(96, track_running_stats=track_running_stats)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 96), bn, nn.SiLU(), nn.Linear(96, 10))


CASES = {
    "conv2d": (conv2d_net, (1, 8, 8)),
    "conv1d": (conv1d_net, (1, 40)),
    "mlp": (mlp, (1, 8, 8)),
    "residual_bn": (ResidualBN, (1, 8, 8)),
    "bn1d_silu": (bn1d_mlp, (1, 8, 8)),
}


def build(factory):
    torch.manual_seed(0)
    return factory()


@pytest.mark.parametrize("case", CASES)
def test_every_proxy_is_a_finite_float(case):
    factory, shape = CASES[case]
    scores = compute_proxies(build(factory), *batch(shape), PROXIES)
    assert list(scores) == list(PROXIES)
    for name, value in scores.items():
        assert isinstance(value, float), name
        assert math.isfinite(value), (name, value)
    assert scores["params"] > 0 and scores["flops"] > 0


def test_synflow_with_batchnorm_without_running_stats():
    net = build(lambda: bn1d_mlp(track_running_stats=False))
    assert compute_proxies(net, *batch((1, 8, 8)), ["synflow"])["synflow"] > 0


def test_conv1d_layers_contribute():
    x, y = batch((1, 40))
    net = build(Conv1dOnly)
    scores = compute_proxies(net, x, y, GRAD_PROXIES)
    assert all(value > 0 for value in scores.values()), scores

    hybrid = build(conv1d_net)
    before = compute_proxies(hybrid, x, y, GRAD_PROXIES)
    with torch.no_grad():
        for module in hybrid.modules():
            if isinstance(module, nn.Conv1d):
                module.weight.zero_()
    after = compute_proxies(hybrid, x, y, GRAD_PROXIES)
    for name in GRAD_PROXIES:
        assert after[name] != pytest.approx(before[name], rel=1e-3), name


def snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [(p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()],
    )


def assert_same(a, b):
    (state_a, modes_a, grads_a), (state_b, modes_b, grads_b) = a, b
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert modes_a == modes_b
    for (req_a, g_a), (req_b, g_b) in zip(grads_a, grads_b, strict=True):
        assert req_a == req_b
        assert (g_a is None and g_b is None) or torch.equal(g_a, g_b)


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_model_and_global_rng_unchanged(mode):
    net = build(ResidualBN)
    net.train(mode == "train")
    if mode == "mixed":
        net.stem.eval()
        net.head[-1].weight.requires_grad_(False)
        net.conv.weight.grad = torch.ones_like(net.conv.weight)
    before, rng = snapshot(net), torch.get_rng_state()
    compute_proxies(net, *batch((1, 8, 8)), PROXIES, seed=3)
    assert_same(before, snapshot(net))
    assert torch.equal(rng, torch.get_rng_state())


def test_deterministic_and_independent_of_order():
    x, y = batch((1, 8, 8))
    first = compute_proxies(build(ResidualBN), x, y, PROXIES, seed=7)
    again = compute_proxies(build(ResidualBN), x, y, tuple(reversed(PROXIES)), seed=7)
    assert first == again
    assert compute_proxies(build(ResidualBN), x, y, ["snip"], seed=7) == {"snip": first["snip"]}
    assert compute_proxies(build(ResidualBN), x, y, ["snip"], seed=8) != {"snip": first["snip"]}


def test_naswot_sees_functional_activations():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(64, 96), nn.Linear(96, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(F.relu(self.a(x.flatten(1))))

    torch.manual_seed(0)
    functional = Functional()
    modular = nn.Sequential(nn.Flatten(), functional.a, nn.ReLU(), functional.b)
    x, y = batch((1, 8, 8))
    score = compute_proxies(functional, x, y, ["naswot"])["naswot"]
    assert math.isfinite(score)
    assert score == compute_proxies(modular, x, y, ["naswot"])["naswot"]


def test_naswot_defined_without_relu():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.Tanh(), nn.Linear(48, 10))
    assert math.isfinite(compute_proxies(net, *batch((1, 8, 8), n=32), ["naswot"])["naswot"])


def test_failures_and_non_finite_values_are_nan():
    class Broken(nn.Module):
        def __init__(self, fail: bool) -> None:
            super().__init__()
            self.fail, self.fc = fail, nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.fail:
                raise RuntimeError("boom")
            return self.fc(x.flatten(1)) * math.inf

    x, y = batch((1, 8, 8))
    for fail in (True, False):
        scores = compute_proxies(Broken(fail), x, y, PROXIES)
        assert scores["params"] == 650
        for name in ("synflow", "grad_norm", "snip") + (("naswot", "flops") if fail else ()):
            assert math.isnan(scores[name]), (fail, name)


def test_naswot_singular_kernel_is_nan():
    torch.manual_seed(0)
    tiny = nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.ReLU(), nn.Linear(4, 10))  # 14 units < 64
    assert math.isnan(compute_proxies(tiny, *batch((1, 8, 8)), ["naswot"])["naswot"])


def test_count_flops_linear_and_conv1d_by_hand():
    linear = nn.Linear(10, 5)
    assert count_flops(linear, torch.randn(7, 10)) == 2 * 10 * 5
    conv = nn.Conv1d(3, 8, 5)  # length 32 -> 28 outputs per channel
    assert count_flops(conv, torch.randn(4, 3, 32)) == 2 * 8 * 28 * 3 * 5
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 28, 10)).train()
    assert count_flops(net, torch.randn(4, 3, 32)) == 2 * 8 * 28 * 3 * 5 + 2 * 8 * 28 * 10
    assert all(m.training for m in net.modules())


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        compute_proxies(mlp(), *batch((1, 8, 8)), ["synflow", "jacov"])
    assert "jacov" in str(err.value)
    assert all(name in str(err.value) for name in PROXIES)


def test_wider_network_has_higher_synflow():
    x, y = batch((1, 8, 8))
    wide = compute_proxies(build(lambda: mlp(256)), x, y, ["synflow"])["synflow"]
    narrow = compute_proxies(build(lambda: mlp(4)), x, y, ["synflow"])["synflow"]
    assert wide > 2 * narrow
