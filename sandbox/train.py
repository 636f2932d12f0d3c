"""Training to a step budget, with early stopping (counted in steps) on a held-out slice of the
training split: the same seed gives the same model whatever the machine's load."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sandbox.protocol import TrainConfig

_MONOTONIC = time.monotonic  # bound before any candidate code runs
IMAGE_SHIFT = 0.125  # TrainConfig.shift's default for images: up to 1/8 of each side


class TrainingFailed(RuntimeError):
    """Training cannot go on (a non-finite loss, a backward error)."""


class TrainingTimeout(RuntimeError):
    """The step budget was not reached before the safety deadline."""


@dataclass(frozen=True)
class TrainReport:
    steps: int
    seconds: float
    final_loss: float
    holdout_acc: float | None
    stopped_on_time: bool = False


def task_loss(task: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss: cross-entropy on logits (classification) or the mean squared error of the
    single output against the standardised target (regression)."""
    if task == "regression":
        return lambda out, y: F.mse_loss(out.squeeze(-1), y)
    return F.cross_entropy


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
    deadline: float | None = None,
    task: str = "classification",
) -> TrainReport:
    """AdamW with warm-up and cosine decay; stops on steps or patience (or ``cfg.max_seconds`` when the
    user asked to train by time); keeps the best on the held-out slice (accuracy, or the lowest squared
    error for regression). ``deadline`` (``time.monotonic()``) is a safety limit: reaching it raises
    TrainingTimeout, it never shortens training silently."""
    loss_fn = task_loss(task)
    held_out = accuracy if task == "classification" else _neg_squared_error
    n_hold = int(len(x) * cfg.holdout_fraction)
    perm = torch.randperm(len(x), generator=generator)
    hold, fit = perm[:n_hold], perm[n_hold:]
    x_fit, y_fit = x[fit].to(device), y[fit].to(device)
    x_hold, y_hold = x[hold].to(device), y[hold].to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, cfg.max_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, cfg.max_steps - warmup)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    best_acc, best_state, bad_evals = -math.inf, None, 0
    start, step, loss_value = _MONOTONIC(), 0, float("nan")
    batch = min(cfg.batch_size, len(x_fit))
    shift = (IMAGE_SHIFT if x.dim() == 4 else 0.0) if cfg.shift is None else cfg.shift
    order, pos = torch.randperm(len(x_fit), generator=generator), 0
    model.train()
    stopped_on_time = False
    while step < cfg.max_steps:
        now = _MONOTONIC()
        if cfg.max_seconds is not None and now - start >= cfg.max_seconds:
            stopped_on_time = True
            break
        if deadline is not None and now >= deadline:
            raise TrainingTimeout(
                f"the training budget of {cfg.max_steps} steps was not reached in {now - start:.0f} s "
                f"(stopped at step {step})"
            )
        if pos + batch > len(order):
            order, pos = torch.randperm(len(x_fit), generator=generator), 0
        idx = order[pos : pos + batch].to(device)
        pos += batch
        xb = shifted(x_fit[idx], shift, generator) if shift else x_fit[idx]
        loss = loss_fn(model(xb), y_fit[idx])
        if not torch.isfinite(loss):
            raise TrainingFailed(
                f"loss became {loss.item()} at step {step}: lower the learning rate or add normalisation"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        sched.step()
        step += 1
        loss_value = loss.item()
        if n_hold and (step % cfg.eval_every == 0 or step == cfg.max_steps):
            acc = held_out(model, x_hold, y_hold)
            model.train()
            if acc > best_acc:
                best_acc, best_state, bad_evals = acc, copy.deepcopy(model.state_dict()), 0
            else:
                bad_evals += 1
                if bad_evals >= cfg.patience and step >= cfg.max_steps * 3 // 4:
                    break
    if n_hold:
        acc = held_out(model, x_hold, y_hold)
        if acc > best_acc:
            best_acc, best_state = acc, None
        if best_state is not None:
            model.load_state_dict(best_state)
    model.eval()
    seconds = _MONOTONIC() - start
    holdout_acc = best_acc if n_hold and task == "classification" else None
    return TrainReport(step, seconds, loss_value, holdout_acc, stopped_on_time)


def shifted(x: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """``x`` (batch, channels, *spatial) with each sample moved by a random whole number of positions,
    at most ``fraction`` of each spatial axis (and at least one), the vacated positions zero. Inputs
    without a spatial axis come back as they are."""
    for axis in range(2, x.dim()):
        size = x.shape[axis]
        reach = max(1, round(size * fraction))
        offsets = torch.randint(-reach, reach + 1, (len(x),), generator=generator).to(x.device)
        padded = F.pad(x.movedim(axis, -1), (reach, reach))
        index = torch.arange(size, device=x.device) + reach - offsets[:, None]
        index = index.view(len(x), *([1] * (padded.dim() - 2)), size).expand(*padded.shape[:-1], size)
        x = padded.gather(-1, index).movedim(-1, axis)
    return x


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch: int = 512) -> torch.Tensor:
    """Logits for ``x`` in eval mode, on the CPU as float32."""
    model.eval()
    outs = [model(x[i : i + batch].to(device)).float().cpu() for i in range(0, len(x), batch)]
    return torch.cat(outs) if outs else torch.empty(0)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Held-out accuracy used only for early stopping inside the worker; never for selection."""
    logits = predict(model, x, x.device)
    return float((logits.argmax(1) == y.cpu()).float().mean()) if len(y) else 0.0


def _neg_squared_error(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Minus the held-out mean squared error (higher is better, as for accuracy); early stopping only."""
    out = predict(model, x, x.device).squeeze(-1)
    return -float(((out - y.cpu()) ** 2).mean()) if len(y) else 0.0
