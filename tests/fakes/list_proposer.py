"""A proposer with no model and no learning: it proposes the given codes in order and records each action
it was asked with."""

from __future__ import annotations

from llmnas.propose.base import Proposal


class ListProposer:
    operators = ("generate",)
    variants = ("default",)

    def __init__(self, codes: list[str]):
        self.codes, self.actions = list(codes), []

    def propose(self, action, parents, spec, rng) -> Proposal:
        code = self.codes[len(self.actions) % len(self.codes)]
        self.actions.append(action)
        return Proposal(code=code, action=action, reply=code)

    @property
    def temperatures(self) -> list[float]:
        return [a.temperature for a in self.actions]

    def learn(self, *args) -> None:
        pass

    def end_round(self, *args) -> None:
        pass

    def state(self) -> tuple[dict, bytes]:
        return {}, b""

    def load_state(self, meta, blob) -> None:
        pass
