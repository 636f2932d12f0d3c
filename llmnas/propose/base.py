"""The Proposer seam: whatever writes candidate code (an LLM or the offline controller)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np

from llmnas.task.spec import TaskSpec


class Operator(StrEnum):
    """How a proposal is made; the policy's operator head, in this order. A plain string in the run log."""

    generate = "generate"
    evolve = "evolve"
    local = "local"
    predict = "predict"
    mutate = "mutate"
    crossover = "crossover"
    simplify = "simplify"
    repair = "repair"
    scale = "scale"


# Operators that pick their parents from the points the proposer has seen (propose/evolution.py), not
# from the archive: the loop hands them none.
OWN_PARENTS = (Operator.evolve, Operator.local, Operator.predict)


@dataclass(frozen=True)
class Action:
    """What the policy chose for one proposal (``operator`` may be given by name)."""

    operator: Operator
    variant: str = "default"
    temperature: float = 0.7
    selector: str = "pareto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "operator", Operator(self.operator))


@dataclass(frozen=True)
class Parent:
    """A candidate offered to a proposer as context: its code, metrics, or its failure."""

    candidate_id: str
    code: str
    metrics: dict[str, float] = field(default_factory=dict)
    reward: float = 0.0
    stage: str | None = None
    message: str = ""
    decisions: tuple[int, ...] = ()


@dataclass(frozen=True)
class Proposal:
    """One proposal: code to evaluate, or the reason there is none, plus its trace."""

    code: str | None
    action: Action
    parent_ids: tuple[str, ...] = ()
    prompt: str = ""
    reply: str = ""
    stage: str | None = None
    message: str = ""
    notes: tuple[str, ...] = ()
    usage: dict[str, int] = field(default_factory=dict)
    decisions: tuple[int, ...] = ()


class Proposer(Protocol):
    """Writes one candidate for an action, given parents and the spec.

    ``operators`` and ``variants`` tell the policy what it may choose; ``end_round`` and the state
    pair let a proposer learn between rounds and resume exactly.
    """

    operators: tuple[Operator, ...]
    variants: tuple[str, ...]

    def propose(
        self, action: Action, parents: Sequence[Parent], spec: TaskSpec, rng: np.random.Generator
    ) -> Proposal: ...

    def learn(self, proposal: Proposal, reward: float) -> None:
        """Feedback after evaluation (the offline controller trains on it; LLMs may ignore it)."""

    def end_round(self, rng: np.random.Generator) -> None: ...

    def state(self) -> tuple[dict, bytes]: ...

    def load_state(self, meta: dict, blob: bytes) -> None: ...
