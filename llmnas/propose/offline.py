"""Proposers that need no language model: the RL controller with code mutations, and random search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmnas.candidate.mutate import MUTATIONS, MutationError, applicable, mutate
from llmnas.errors import UserError
from llmnas.propose import space
from llmnas.propose.base import Action, Operator, Parent, Proposal
from llmnas.propose.controller import Controller
from llmnas.propose.evolution import METHODS, History, canonical, mutated
from llmnas.propose.scaling import scale_proposal
from llmnas.task.spec import TaskSpec

OFFLINE_OPERATORS = (
    Operator.generate,
    *METHODS,
    Operator.mutate,
    Operator.crossover,
    Operator.simplify,
    Operator.scale,
)
# --strategy local, the default: the controller's samples and local search around the best (the mix that
# beat random search on bench/search_table.py's tasks), and scale, which refinements and small models need.
LOCAL_OPERATORS = (Operator.generate, Operator.local, Operator.scale)
SAMPLE_TRIES = 64


def limit_note(spec: TaskSpec, *, llm: bool) -> str | None:
    """One line when the parameter limit is below the smallest model the offline space builds for this
    data, else None. Raises UserError without a language model: every proposal would fail the limit."""
    if spec.max_params is None or spec.input_shape is None or spec.num_classes is None:
        return None
    shape = tuple(spec.input_shape)
    point, size = space.smallest(spec.modality, shape, spec.num_classes)
    if size <= spec.max_params:
        return None
    outputs = f"{spec.num_classes} classes" if spec.task == "classification" else "1 output"
    line = (
        f"at most {spec.max_params:,} parameters: the smallest model the offline search space builds for "
        f"input {shape} and {outputs} has {size:,} parameters ({space.describe(spec.modality, point)})"
    )
    if llm:
        return f"{line}; the language model may still write a smaller one"
    raise UserError(
        f"{line}: allow at least {size:,} parameters, or let a language model write candidates (--llm)"
    )


class OfflineProposer:
    """Zoph & Le controller (REINFORCE with a baseline) for ``generate``; aging evolution, local search
    and predictor-guided proposals over the points evaluated so far for ``evolve``, ``local`` and
    ``predict`` (propose/evolution.py); for ``mutate``, one decision of the variant's kind when the parent
    is a point of the space, else a libcst code mutation (as for ``simplify`` without decisions);
    decision-level uniform crossover of two controller-born parents for ``crossover``; compound scaling
    for ``scale``.
    ``operators`` narrows what the policy may choose (ablations)."""

    variants = MUTATIONS

    def __init__(
        self,
        modality: str,
        seed: int,
        *,
        learn_controller: bool = True,
        operators: tuple[Operator, ...] = OFFLINE_OPERATORS,
    ):
        unknown = sorted(set(operators) - set(OFFLINE_OPERATORS))
        if unknown or Operator.generate not in operators:
            raise ValueError(
                f"offline operators are {', '.join(OFFLINE_OPERATORS)}, generate among them; got {operators}"
            )
        self.modality = modality
        self.operators = tuple(map(Operator, operators))
        self.controller = Controller(space.decisions_for(modality), seed=seed)
        self.learn_controller = learn_controller
        self.history = History(modality)
        self._pending: list[tuple[tuple[int, ...], float]] = []

    def _render(
        self, action: Action, decisions: tuple[int, ...], parents: tuple[str, ...] = (), note: str = ""
    ) -> Proposal:
        return Proposal(
            code=space.render(self.modality, decisions),
            action=action,
            parent_ids=parents,
            decisions=decisions,
            notes=(note,) if note else (),
        )

    def propose(
        self, action: Action, parents: Sequence[Parent], spec: TaskSpec, rng: np.random.Generator
    ) -> Proposal:
        op = action.operator
        if op == Operator.scale and parents:
            return scale_proposal(action, parents[0], spec)
        if op in METHODS:
            point = METHODS[op](self.history, rng, lambda p: self._fits(p, spec))
            if point is not None:
                return self._render(action, point, note=f"{op}: from {len(self.history.rows)} points seen")
        if op == Operator.crossover and len(parents) >= 2:
            a, b = parents[0].decisions, parents[1].decisions
            if a and b:
                mask = rng.random(len(a)) < 0.5
                child = tuple(int(x if m else y) for x, y, m in zip(a, b, mask, strict=True))
                return self._render(
                    action,
                    child,
                    (parents[0].candidate_id, parents[1].candidate_id),
                    "uniform crossover of decisions",
                )
            op = Operator.mutate
        if op == Operator.simplify and parents and parents[0].decisions:
            smaller = self._smaller(parents[0].decisions, rng)
            if smaller is not None:
                return self._render(
                    action, smaller, (parents[0].candidate_id,), "simplify: one size step down"
                )
        # A point of the space: a decision changes.
        if op == Operator.mutate and parents and parents[0].decisions:
            point = mutated(
                self.history,
                canonical(self.modality, parents[0].decisions),
                action.variant,
                rng,
                lambda p: self._fits(p, spec),
            )
            if point is not None:
                return self._render(action, point, (parents[0].candidate_id,), f"mutate {action.variant}")
        if op in (Operator.mutate, Operator.simplify) and parents:
            parent = parents[0]
            kinds = applicable(parent.code)
            kind = "width" if op == Operator.simplify else action.variant
            if kind not in kinds:
                kind = kinds[int(rng.integers(len(kinds)))] if kinds else ""
            if kind:
                try:
                    code, what = mutate(parent.code, kind, rng)
                    return Proposal(
                        code=code, action=action, parent_ids=(parent.candidate_id,), notes=(what,)
                    )
                except MutationError as exc:
                    return Proposal(
                        code=None,
                        action=action,
                        parent_ids=(parent.candidate_id,),
                        stage="static",
                        message=f"mutation {kind} failed: {exc}",
                    )
        return self._render(action, self._sample_within(spec, rng))

    def _fits(self, decisions: tuple[int, ...], spec: TaskSpec) -> bool:
        """Whether the point is inside the spec's parameter limit (the space's own count)."""
        if spec.max_params is None or spec.input_shape is None or spec.num_classes is None:
            return True
        return (
            space.param_count(self.modality, decisions, tuple(spec.input_shape), spec.num_classes)
            <= spec.max_params
        )

    def _sample_within(self, spec: TaskSpec, rng: np.random.Generator) -> tuple[int, ...]:
        """A sample inside the spec's parameter limit (the space counts parameters analytically), so a
        tight limit wastes no evaluations; after ``SAMPLE_TRIES`` misses, the smallest sample seen."""
        if spec.max_params is None or spec.input_shape is None or spec.num_classes is None:
            return self._sample(rng)
        best, best_size = None, None
        for _ in range(SAMPLE_TRIES):
            decisions = self._sample(rng)
            size = space.param_count(self.modality, decisions, tuple(spec.input_shape), spec.num_classes)
            if size <= spec.max_params:
                return decisions
            if best_size is None or size < best_size:
                best, best_size = decisions, size
        return best

    def _smaller(self, decisions: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...] | None:
        """The parent one step smaller: a narrower layer (choices are ordered small to large) or one block less."""
        names = [d.name for d in space.decisions_for(self.modality)]
        blocks = space.values(self.modality, decisions)["blocks"]
        width = "width" if self.modality == "tabular" else "channels"
        options = [
            names.index(f"{width}{i}") for i in range(blocks) if decisions[names.index(f"{width}{i}")] > 0
        ]
        if decisions[names.index("blocks")] > 0:  # one block less (tabular: down to a linear model)
            options.append(names.index("blocks"))
        if not options:
            return None
        out = list(decisions)
        out[options[int(rng.integers(len(options)))]] -= 1
        return tuple(out)

    def _sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return self.controller.sample(rng)

    def learn(self, proposal: Proposal, reward: float) -> None:
        if not proposal.decisions:
            return
        if proposal.stage != "duplicate":  # evaluated (or given back over a limit): a point seen
            self.history.add(proposal.decisions, reward)
        if proposal.action.operator == Operator.generate and self.learn_controller:
            self._pending.append((proposal.decisions, reward))

    def end_round(self, rng: np.random.Generator) -> None:
        """One REINFORCE step on the round's controller samples."""
        batch, self._pending = self._pending, []
        self.controller.update(batch)

    def state(self) -> tuple[dict, bytes]:
        return {"history": self.history.to_json()}, self.controller.to_bytes()

    def load_state(self, meta: dict, blob: bytes) -> None:
        self.controller.load_bytes(blob)
        self.history = History(self.modality, meta.get("history", []))


class RandomProposer(OfflineProposer):
    """Random search, the baseline of NAS benchmarks: every proposal a uniform draw from the space, inside
    the parameter limit as the default's; nothing is learned, no parent is used (strategy ``random``)."""

    def __init__(self, modality: str, seed: int):
        super().__init__(modality, seed, learn_controller=False, operators=(Operator.generate,))

    def _sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return space.sample_uniform(self.modality, rng)
