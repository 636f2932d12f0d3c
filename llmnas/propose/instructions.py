"""The evolving archive of mutation instructions the LLM proposer picks from (an EvoPrompting-style
population): running scores per instruction, new ones written by the model from the best, the worst retired."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from llmnas.llm.chat import ChatModel, LLMError, RunEnding
from llmnas.llm.prompts import render

log = logging.getLogger("llmnas.propose.instructions")

DEFAULT_INSTRUCTIONS: tuple[tuple[str, str], ...] = (
    ("widen", "Widen the network: give its main layers about 1.5x more channels or hidden units."),
    ("deepen", "Deepen the network: add one more block of the kind it already uses where it helps most."),
    (
        "residual",
        "Add residual connections around blocks whose input and output shapes match "
        "(use a 1x1 projection where they do not).",
    ),
    (
        "batchnorm",
        "Add batch normalisation after each convolution or hidden linear layer, before the activation.",
    ),
    (
        "fewer-params",
        "Halve the parameter count while keeping accuracy: narrow the widest layers or replace a large "
        "linear layer with global average pooling.",
    ),
    (
        "activation",
        "Swap the activation function for a better one here (e.g. GELU, SiLU or Hardswish) everywhere.",
    ),
    ("dropout", "Add dropout (p 0.1 to 0.3) before the classifier head and between large hidden layers."),
    (
        "depthwise",
        "Replace standard convolutions with depthwise-separable ones (depthwise then 1x1 pointwise) and "
        "spend the saved parameters on width.",
    ),
)


@dataclass
class Instruction:
    """A mutation instruction with the running mean of the rewards it earned."""

    name: str
    text: str
    mean: float = 0.0
    count: int = 0
    origin: str = "seed"


class InstructionArchive:
    """Mutation instructions with running scores; the model writes new ones from the best, the worst retire."""

    def __init__(
        self,
        instructions: Iterable[tuple[str, str]] = DEFAULT_INSTRUCTIONS,
        *,
        capacity: int = 16,
        min_trials: int = 3,
        exploration: float = 0.5,
    ):
        self._items = {name: Instruction(name, text) for name, text in instructions}
        if not self._items:
            raise ValueError("InstructionArchive needs at least one instruction")
        self.capacity = max(capacity, 1)
        self.min_trials = min_trials
        self.exploration = exploration
        self._serial = 0

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)

    def names(self) -> tuple[str, ...]:
        """The live instruction ids (the policy's prompt variants)."""
        return tuple(self._items)

    def get(self, name: str) -> Instruction:
        return self._items[name]

    def choose(self, rng: np.random.Generator) -> str:
        """An untried instruction if any (at random), else the best by UCB."""
        untried = [i.name for i in self._items.values() if i.count == 0]
        if untried:
            return untried[int(rng.integers(len(untried)))]
        total = sum(i.count for i in self._items.values())
        return max(
            self._items.values(),
            key=lambda i: i.mean + self.exploration * math.sqrt(math.log(total) / i.count),
        ).name

    def update(self, name: str, reward: float) -> None:
        """Fold one reward into an instruction's running mean (a retired one is ignored)."""
        item = self._items.get(name)
        if item is not None:
            item.count += 1
            item.mean += (float(reward) - item.mean) / item.count

    def best(self, k: int) -> list[Instruction]:
        """The ``k`` tried instructions with the highest mean reward (untried ones when none is tried)."""
        tried = [i for i in self._items.values() if i.count > 0] or list(self._items.values())
        return sorted(tried, key=lambda i: (-i.mean, -i.count))[:k]

    def add(self, text: str) -> str | None:
        """Add an instruction written by the model; a duplicate or an unusable line returns None."""
        text = text.strip()
        if not 10 <= len(text) <= 400 or _key(text) in {_key(i.text) for i in self._items.values()}:
            return None
        self._serial += 1
        name = f"evolved-{self._serial}"
        self._items[name] = Instruction(name, text, origin="evolved")
        return name

    def retire(self, keep: Iterable[str] = ()) -> list[str]:
        """Drop the worst instructions while over capacity; well-tried ones go first, ``keep`` never."""
        keep, gone = set(keep), []
        while len(self._items) > self.capacity:
            pool = [i for i in self._items.values() if i.name not in keep]
            if not pool:
                break
            judged = [i for i in pool if i.count >= self.min_trials] or pool
            worst = min(judged, key=lambda i: (i.mean, i.count))
            del self._items[worst.name]
            gone.append(worst.name)
        return gone

    def evolve(self, chat: ChatModel, rng: np.random.Generator, *, k: int = 4, count: int = 3) -> list[str]:
        """Ask the model for ``count`` new instructions from the best ``k``; returns the ids added.

        A failed call is logged and adds nothing; BudgetExhausted propagates.
        """
        best = self.best(k)
        order = rng.permutation(len(best))
        lines = "\n".join(
            f"- score {best[j].mean:.4f} ({best[j].count} trials): {best[j].text}" for j in order
        )
        prompt = render("instruction_evolution", instructions=lines, count=count)
        try:
            reply = chat.complete(
                [{"role": "user", "content": prompt}], temperature=1.0, n=1, max_tokens=512
            )[0].text
        except RunEnding:
            raise
        except LLMError as e:
            log.warning("instruction evolution failed: %s", e)
            return []
        added: list[str] = []
        for line in _instruction_lines(reply):
            if len(added) < count and (name := self.add(line)):
                added.append(name)
        retired = self.retire(keep=added)
        if added or retired:
            log.info("instructions: added %s, retired %s", added, retired)
        return added

    def state_dict(self) -> dict:
        """JSON-able state for resume."""
        return {
            "capacity": self.capacity,
            "min_trials": self.min_trials,
            "exploration": self.exploration,
            "serial": self._serial,
            "instructions": [asdict(i) for i in self._items.values()],
        }

    def load_state_dict(self, state: dict) -> None:
        self.capacity = int(state["capacity"])
        self.min_trials = int(state["min_trials"])
        self.exploration = float(state["exploration"])
        self._serial = int(state["serial"])
        self._items = {d["name"]: Instruction(**d) for d in state["instructions"]}


def _key(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def _instruction_lines(reply: str) -> list[str]:
    lines = []
    for raw in reply.splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", raw).strip().strip("\"'`").strip()
        if line and not line.startswith("```"):
            lines.append(line)
    return lines
