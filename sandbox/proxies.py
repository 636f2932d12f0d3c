"""Zero-cost proxies: cheap scores of an untrained network, used to pre-screen candidates.

synflow, grad_norm and snip follow Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR
2021); naswot follows Mellor et al., "Neural Architecture Search without Training" (ICML 2021).

"Weights" below means every trainable parameter with two or more dimensions: the weights of Conv1d,
Conv2d, Conv3d and Linear layers, and equally of attention projections, embeddings and hand-rolled
layers; biases and normalisation scales are left out. Reference implementations keep only Conv2d and
Linear, which silently scores a Conv1d network as if it had no convolutions.

synflow, naswot, grad_norm and snip run on deep copies and flops restores the train/eval modes it
changes, so the caller's parameters, buffers, gradients and modes are untouched. A proxy that fails
or gives a non-finite value yields float("nan") and logs a warning.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode

logger = logging.getLogger(__name__)

PROXIES: tuple[str, ...] = ("synflow", "naswot", "grad_norm", "snip", "params", "flops")

# Torch functions whose input sign is a unit's on/off code, whether called through a module
# (nn.ReLU -> F.relu, nn.ReLU6 -> F.hardtanh) or directly in forward (F.relu, x.relu_(), ...).
_ACTIVATIONS = frozenset(
    {
        "relu", "relu_", "relu6", "hardtanh", "hardtanh_", "leaky_relu", "leaky_relu_", "prelu",
        "rrelu", "rrelu_", "elu", "elu_", "celu", "celu_", "selu", "selu_", "gelu", "silu", "mish",
        "hardswish",
    }
)  # fmt: skip
# Fallback for networks without such activations: the sign of each layer's output.
_LAYERS = frozenset({"linear", "conv1d", "conv2d", "conv3d"})
# Bound at import, before any candidate runs here: rebinding the module's names later changes nothing.
_FLOP_COUNTER, _TOTAL_FLOPS, _MODULES = FlopCounterMode, FlopCounterMode.get_total_flops, nn.Module.modules


def compute_proxies(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    names: Sequence[str],
    *,
    seed: int = 0,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
) -> dict[str, float]:
    """Score `model` on the minibatch (x, y) with each proxy in `names` (see PROXIES).

    Deterministic for a given seed on CPU (the global RNG is left as it was); raises ValueError only
    for an unknown name.
    """
    unknown = [name for name in names if name not in PROXIES]
    if unknown:
        raise ValueError(f"unknown proxy name(s) {unknown}; valid names are: {', '.join(PROXIES)}")

    @cache
    def grads() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return _loss_grads(model, x, y, loss)

    scorers: dict[str, Callable[[], float]] = {
        "synflow": lambda: _synflow(model, x),
        "naswot": lambda: _naswot(model, x),
        "grad_norm": lambda: sum(float(g.norm()) for _, g in grads()),
        "snip": lambda: sum(float((w * g).abs().sum()) for w, g in grads()),
        "params": lambda: sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops": lambda: count_flops(model, x),
    }
    scores: dict[str, float] = {}
    with torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        for name in dict.fromkeys(names):
            torch.manual_seed(seed)
            try:
                value = float(scorers[name]())
            except Exception as exc:  # a candidate's failure is a value, never a crash here
                logger.warning("proxy %s failed: %s: %s", name, type(exc).__name__, exc)
                value = math.nan
            scores[name] = value if math.isfinite(value) else math.nan
    return scores


def count_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """FLOPs of one forward pass on the first sample of `example_input`, in eval mode.

    Counted by torch.utils.flop_counter.FlopCounterMode: matmuls, convolutions of any dimension and
    attention, a multiply-add being 2 FLOPs (Linear(i, o) is 2*i*o); elementwise ops count nothing.
    """
    modes = [(module, module.training) for module in _MODULES(model)]
    for module, _ in modes:
        module.training = False
    try:
        with torch.no_grad(), _FLOP_COUNTER(display=False) as counter:
            model(example_input[:1])
    finally:
        for module, training in modes:
            module.training = training
    return int(_TOTAL_FLOPS(counter))


def _weights(net: nn.Module) -> list[nn.Parameter]:
    return [p for p in net.parameters() if p.requires_grad and p.dim() >= 2]


def _grads(output: torch.Tensor, weights: list[nn.Parameter]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, d output / d weight) pairs, skipping weights the output does not depend on."""
    if not weights:
        return []
    grads = torch.autograd.grad(output, weights, allow_unused=True)
    return [(w.detach(), g) for w, g in zip(weights, grads, strict=True) if g is not None]


def _loss_grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Callable
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Weights and the gradients of the training loss on (x, y), in train mode (shared by grad_norm,
    snip)."""
    net = copy.deepcopy(model).train()
    with torch.enable_grad():
        return _grads(loss(net(x), y), _weights(net))


def _synflow(model: nn.Module, x: torch.Tensor) -> float:
    """sum |theta * dR/dtheta|, R the summed output of the |theta| network on an all-ones input.

    Runs in double precision, which delays overflow in deep networks; a model that cannot (e.g. it
    builds float32 tensors in forward) is scored in float32.
    """
    try:
        return _synflow_in(model, x, torch.float64)
    except (RuntimeError, TypeError):
        return _synflow_in(model, x, torch.float32)


def _synflow_in(model: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> float:
    """Synflow at one precision, on a copy with BatchNorm reduced to an affine map.

    The reference removes BatchNorm; eval mode with zero mean and unit variance does the same here.
    """
    net = copy.deepcopy(model).eval().to(dtype)
    for module in net.modules():
        if isinstance(module, _BatchNorm):  # also when it tracks no running statistics
            module.running_mean = torch.zeros(module.num_features, dtype=dtype, device=x.device)
            module.running_var = torch.ones_like(module.running_mean)
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=dtype if x.is_floating_point() else x.dtype, device=x.device)
    with torch.enable_grad():
        pairs = _grads(net(ones).sum(), _weights(net))
    return sum(float((w * g).abs().sum()) for w, g in pairs)


def _naswot(model: nn.Module, x: torch.Tensor) -> float:
    """log|K| (Mellor et al.) with K[i, j] the number of units on which samples i and j agree.

    A unit is on when the input of a ReLU-like activation is positive (for GELU, SiLU and kin too),
    over every activation module or functional call, with conv feature maps flattened per sample.
    A network with no such activation is scored on the sign of its Linear/Conv outputs instead.
    """
    net = copy.deepcopy(model).train()
    for names, on_output in ((_ACTIVATIONS, False), (_LAYERS, True)):
        with torch.no_grad(), _CodeKernel(names, on_output, batch=x.shape[0]) as codes:
            net(x)
        if codes.kernel is not None:
            return _logdet_psd(codes.kernel)
    return math.nan


def _logdet_psd(kernel: torch.Tensor) -> float:
    """log det of a positive semi-definite matrix; -inf when it is numerically singular.

    The kernel is singular when the network has fewer units than the batch has samples or when two
    samples share every code; slogdet would then return rounding noise instead of -inf.
    """
    eig = torch.linalg.eigvalsh(kernel)
    if eig[0] <= eig[-1] * kernel.shape[0] * torch.finfo(eig.dtype).eps:
        return -math.inf
    return float(eig.log().sum())


class _CodeKernel(TorchFunctionMode):
    """Accumulates the NASWOT kernel from every call to the named torch functions in a forward pass."""

    def __init__(self, names: frozenset[str], on_output: bool, batch: int) -> None:
        super().__init__()
        self.names, self.on_output, self.batch = names, on_output, batch
        self.kernel: torch.Tensor | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        hooked = getattr(func, "__name__", None) in self.names and args and isinstance(args[0], torch.Tensor)
        if hooked and not self.on_output:
            self._add(args[0])  # before the call: in-place activations overwrite their input
        out = func(*args, **(kwargs or {}))
        if hooked and self.on_output and isinstance(out, torch.Tensor):
            self._add(out)
        return out

    def _add(self, t: torch.Tensor) -> None:
        if t.dim() < 2 or t.shape[0] != self.batch:
            return
        c = (t.detach() > 0).flatten(1).float()
        on = c.sum(1)
        # Agreements c c^T + (1-c)(1-c)^T in one matmul; exact integers below 2**24 units per call.
        agree = 2 * (c @ c.T) - on[:, None] - on[None, :] + c.shape[1]
        self.kernel = agree.double() if self.kernel is None else self.kernel + agree.double()
