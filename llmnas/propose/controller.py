"""Zoph & Le style controller: an LSTM emits one decision per step, trained with REINFORCE.

The reward baseline is an exponential moving average; an entropy bonus keeps it exploring. Sampling
draws from the passed numpy Generator, so the same seed gives the same architectures.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn

from llmnas.errors import UserError
from llmnas.propose.space import Decision


def _one_thread(method):
    """Run on one intra-op thread: multi-threaded float reductions can differ between runs, and a last-bit
    difference in a probability can flip a sample, so the same seed would not give the same run."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return method(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


class Controller(nn.Module):
    """LSTM policy over a fixed sequence of categorical decisions."""

    def __init__(
        self,
        decisions: tuple[Decision, ...],
        seed: int,
        hidden: int = 64,
        lr: float = 5e-3,
        entropy_weight: float = 1e-3,
        baseline_decay: float = 0.9,
        temperature: float = 1.5,
    ):
        super().__init__()
        self.sizes = [len(d.choices) for d in decisions]
        with torch.random.fork_rng(devices=[]):  # only parameter init uses torch's RNG, without touching it
            torch.manual_seed(seed)
            self.start = nn.Parameter(torch.zeros(1, hidden))
            self.embed = nn.ModuleList(nn.Embedding(n, hidden) for n in self.sizes)
            self.cell = nn.LSTMCell(hidden, hidden)
            self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)
        for head in self.heads:  # start near uniform
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.entropy_weight, self.baseline_decay, self.temperature = (
            entropy_weight,
            baseline_decay,
            temperature,
        )
        self.baseline: float | None = None
        self.opt = torch.optim.Adam(self.parameters(), lr=lr)

    def _run(self, choices: list[int] | None, rng: np.random.Generator | None):
        h = c = torch.zeros(1, self.start.shape[1])
        inp = self.start
        picked, log_probs, entropies = [], [], []
        for step, n in enumerate(self.sizes):
            h, c = self.cell(inp, (h, c))
            logits = self.heads[step](h)[0] / self.temperature
            log_p = torch.log_softmax(logits, -1)
            if choices is None:
                probs = log_p.exp().detach().double().numpy()
                choice = int(rng.choice(n, p=probs / probs.sum()))
            else:
                choice = choices[step]
            picked.append(choice)
            log_probs.append(log_p[choice])
            entropies.append(-(log_p.exp() * log_p).sum())
            inp = self.embed[step](torch.tensor([choice]))
        return tuple(picked), torch.stack(log_probs).sum(), torch.stack(entropies).sum()

    @torch.no_grad()
    @_one_thread
    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return self._run(None, rng)[0]

    @_one_thread
    def update(self, batch: list[tuple[tuple[int, ...], float]]) -> float:
        """One REINFORCE step on (choices, reward) pairs; returns the loss."""
        if not batch:
            return 0.0
        losses = []
        for choices, reward in batch:
            if self.baseline is None:
                self.baseline = reward
            advantage = reward - self.baseline
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
            _, log_prob, entropy = self._run(list(choices), None)
            losses.append(-advantage * log_prob - self.entropy_weight * entropy)
        loss = torch.stack(losses).mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def probabilities(self) -> list[list[float]]:
        """Greedy-path choice probabilities per step, for reports."""
        with torch.no_grad():
            h = c = torch.zeros(1, self.start.shape[1])
            inp, out = self.start, []
            for step in range(len(self.sizes)):
                h, c = self.cell(inp, (h, c))
                p = torch.softmax(self.heads[step](h)[0] / self.temperature, -1)
                out.append([round(float(x), 4) for x in p])
                inp = self.embed[step](p.argmax().view(1))
        return out

    def to_bytes(self) -> bytes:
        """Weights and optimiser moments as safetensors bytes (never pickle)."""
        tensors = {f"model.{k}": v.contiguous() for k, v in self.state_dict().items()}
        for pid, group in self.opt.state_dict()["state"].items():
            for k, v in group.items():
                tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).contiguous()
        tensors["baseline"] = torch.tensor(
            [np.nan if self.baseline is None else self.baseline], dtype=torch.float64
        )
        return save_tensors(tensors)

    def load_bytes(self, data: bytes) -> None:
        """Raises UserError when the state was saved for decisions of other sizes (the space changed)."""
        tensors = load_tensors(data)
        heads = {
            int(k.split(".")[2]): len(v)
            for k, v in tensors.items()
            if k.startswith("model.heads.") and k.endswith(".bias")
        }
        saved = [heads[i] for i in sorted(heads)]
        if saved != self.sizes:
            raise UserError(
                f"the saved controller state is for a search space with choices per decision {saved}; this "
                f"llmnas's space has {self.sizes}: resume the run with the llmnas that started it, or start a new run"
            )
        self.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state = self.opt.state_dict()
        for pid in opt_state["param_groups"][0]["params"]:
            keys = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"opt.{pid}.")}
            if keys:
                opt_state["state"][pid] = keys
        self.opt.load_state_dict(opt_state)
        base = float(tensors["baseline"][0])
        self.baseline = None if np.isnan(base) else base
