"""RL-style feedback over how to propose: REINFORCE on four independent softmax heads.

Heads: operator (masked to the operators the caller says are available), prompt variant (the
caller's current set: a new id starts at the best kept logit + ``optimism``, a retired id is
dropped), temperature (a fixed grid) and parent selector. After each reward ``r``, for every head
whose choice is still known, with ``p`` the softmax over the logits the choice was drawn from:

    A  = (r - b) / s                   (b: EMA baseline, s: EMA scale of |r - b|; A = 0 at first)
    z += lr * (A * (onehot(choice) - p) + entropy_coef * dH/dz),  dH/dz = -p * (log p + H)
    b  = decay * b + (1 - decay) * r

The scale makes learning independent of the reward's units: candidates that differ by a point of
accuracy move the policy as much as a pass against a failure does, once that is all that varies.

so a choice that beats the baseline becomes more likely, while the entropy term keeps every option
alive. For the operator head the mask of the matching ``choose`` is remembered until its update.

``Policy.uniform()`` is random search's: every head uniform over what is offered (parents by the archive's
``uniform`` selector), and nothing learned (no step size, no entropy term, no optimism for new variants).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmnas.engine.archive import SELECTORS, UNIFORM
from llmnas.propose.base import Action, Operator

TEMPERATURES = (0.2, 0.5, 0.8, 1.0)
_HEADS = ("operator", "variant", "temperature", "selector")
_MAX_PENDING = 256


def _tkey(t: float) -> str:
    return f"{float(t):g}"


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


class Policy:
    """Learned distributions over operator, prompt variant, temperature and parent selector."""

    def __init__(
        self,
        temperatures: Sequence[float] = TEMPERATURES,
        selectors: Sequence[str] = SELECTORS,
        lr: float = 0.1,
        entropy_coef: float = 0.05,
        baseline_decay: float = 0.9,
        optimism: float = 0.5,
    ) -> None:
        if not temperatures or not selectors:
            raise ValueError("Policy needs at least one temperature and one selector")
        self.lr = float(lr)
        self.entropy_coef = float(entropy_coef)
        self.baseline_decay = float(baseline_decay)
        self.optimism = float(optimism)
        self._logits: dict[str, dict[str, float]] = {
            "operator": dict.fromkeys(Operator, 0.0),
            "variant": {},
            "temperature": dict.fromkeys(map(_tkey, temperatures), 0.0),
            "selector": dict.fromkeys(selectors, 0.0),
        }
        self._baseline: float | None = None
        self._scale: float | None = None
        self._count = dict.fromkeys(Operator, 0)
        self._reward_sum = dict.fromkeys(Operator, 0.0)
        self._pending: list[tuple[Operator, tuple[Operator, ...]]] = []

    @classmethod
    def uniform(cls) -> Policy:
        """Random search: uniform choices, parents uniform among passing candidates, logits that never move."""
        return cls(selectors=(UNIFORM,), lr=0.0, entropy_coef=0.0, optimism=0.0)

    def _sync_variants(self, variants: Sequence[str]) -> None:
        old = self._logits["variant"]
        kept = [old[v] for v in variants if v in old]
        start = max(kept) + self.optimism if kept else 0.0
        self._logits["variant"] = {v: old.get(v, start) for v in dict.fromkeys(variants)}

    def _sample(self, head: str, names: Sequence[str], rng: np.random.Generator) -> str:
        z = np.array([self._logits[head][n] for n in names])
        return names[int(rng.choice(len(names), p=_softmax(z)))]

    def choose(
        self, rng: np.random.Generator, operators: Sequence[Operator], variants: Sequence[str]
    ) -> Action:
        """Sample an action; ``operators`` are those available now, ``variants`` the live prompt ids."""
        unknown = set(operators) - set(Operator)
        if unknown or not operators:
            raise ValueError(
                f"operators must be a non-empty subset of {', '.join(Operator)}, got {operators}"
            )
        if not variants:
            raise ValueError("choose needs at least one prompt variant id")
        self._sync_variants(variants)
        available = tuple(o for o in Operator if o in set(operators))
        operator = self._sample("operator", available, rng)
        action = Action(
            operator=operator,
            variant=self._sample("variant", list(self._logits["variant"]), rng),
            temperature=float(self._sample("temperature", list(self._logits["temperature"]), rng)),
            selector=self._sample("selector", list(self._logits["selector"]), rng),
        )
        self._pending = [*self._pending, (operator, available)][-_MAX_PENDING:]
        return action

    def hotter(self, temperature: float) -> float:
        """The next temperature of the grid above ``temperature`` (the highest when none is above)."""
        grid = sorted(float(t) for t in self._logits["temperature"])
        return next((t for t in grid if t > temperature), grid[-1])

    def _step(self, head: str, names: Sequence[str], chosen: str, advantage: float) -> None:
        logits = self._logits[head]
        z = np.array([logits[n] for n in names])
        p = _softmax(z)
        logp = np.log(p)
        grad = -p
        grad[list(names).index(chosen)] += 1.0
        grad_entropy = -p * (logp + float(-(p * logp).sum()))
        z = z + self.lr * (advantage * grad + self.entropy_coef * grad_entropy)
        for n, v in zip(names, z, strict=True):
            logits[n] = float(v)

    def update(self, action: Action, reward: float) -> None:
        """One REINFORCE step from the reward of ``action`` (heads whose choice was retired are skipped)."""
        reward = float(reward)
        advantage = 0.0 if self._baseline is None else reward - self._baseline
        if self._baseline is not None:
            d = self.baseline_decay
            self._scale = (
                abs(advantage) if self._scale is None else d * self._scale + (1 - d) * abs(advantage)
            )
            advantage = float(np.clip(advantage / max(self._scale, 1e-6), -3.0, 3.0))
        match = next((i for i, (op, _) in enumerate(self._pending) if op == action.operator), None)
        available = tuple(Operator) if match is None else self._pending.pop(match)[1]
        self._step("operator", available, action.operator, advantage)
        for head, choice in (
            ("variant", action.variant),
            ("temperature", _tkey(action.temperature)),
            ("selector", action.selector),
        ):
            if choice in self._logits[head]:
                self._step(head, list(self._logits[head]), choice, advantage)
        d = self.baseline_decay
        self._baseline = reward if self._baseline is None else d * self._baseline + (1 - d) * reward
        self._count[action.operator] += 1
        self._reward_sum[action.operator] += reward

    def probabilities(self) -> dict[str, dict[str, float]]:
        """Unmasked probabilities per head (temperatures keyed as text, e.g. "0.5")."""
        out = {}
        for head in _HEADS:
            names = list(self._logits[head])
            p = _softmax(np.array([self._logits[head][n] for n in names])) if names else []
            out[head] = {n: float(v) for n, v in zip(names, p, strict=True)}
        return out

    def stats(self) -> dict[str, dict[str, float | None]]:
        """Per operator: how often it was rewarded and its mean reward (None before its first)."""
        return {
            op: {"count": n, "mean_reward": self._reward_sum[op] / n if n else None}
            for op, n in self._count.items()
        }

    def state_dict(self) -> dict:
        """JSON-serialisable state (logits as ordered [name, value] pairs)."""
        return {
            "logits": {h: [[n, v] for n, v in self._logits[h].items()] for h in _HEADS},
            "baseline": self._baseline,
            "scale": self._scale,
            "count": dict(self._count),
            "reward_sum": dict(self._reward_sum),
            "pending": [[op, list(avail)] for op, avail in self._pending],
        }

    def load_state_dict(self, d: dict) -> None:
        """Restore exactly what ``state_dict`` saved (operators added since start untried, at 0)."""
        self._logits = {h: {str(n): float(v) for n, v in d["logits"][h]} for h in _HEADS}
        self._logits["operator"] = dict.fromkeys(Operator, 0.0) | self._logits["operator"]
        self._baseline = None if d["baseline"] is None else float(d["baseline"])
        self._scale = None if d["scale"] is None else float(d["scale"])
        self._count = dict.fromkeys(Operator, 0) | {op: int(n) for op, n in d["count"].items()}
        self._reward_sum = dict.fromkeys(Operator, 0.0) | {op: float(s) for op, s in d["reward_sum"].items()}
        self._pending = [(Operator(op), tuple(map(Operator, avail))) for op, avail in d["pending"]]
