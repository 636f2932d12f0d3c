"""A run's log read once: events.jsonl folded into one typed, read-only projection, :class:`RunView`.

Every reader takes its view of the log from here (resume and the search's replay of a round, show,
list, the report and dashboard, traces, usage budgets, replayed model replies), so that they agree; in
the spirit of optuna's JournalStorage, whose state is the replay of its log. The rules, once:

- a proposal logged twice (a resumed round is replayed) counts once: the last line per (round, slot),
  in (round, slot) order;
- a candidate's latest evaluation wins;
- an evaluation belongs to the first proposal, in that order, that sent its candidate to the sandbox; one
  whose proposal line was lost is a trial of its own, after the proposals;
- a round's size is the last one logged by its proposals (a resumed round is replayed at that size);
- the spec in force is the last refinement's, else the run's own;
- a line that cannot be read is skipped and kept with its number.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from llmnas.llm.usage import Usage
from llmnas.metrics import failure_reward
from llmnas.runs.events import (
    EvaluationEvent,
    FinalEvent,
    LLMCallEvent,
    LLMReplyEvent,
    PauseEvent,
    ProposalEvent,
    RefineEvent,
    Replay,
    RoundEvent,
    Skipped,
    StoppedEvent,
    replay,
)
from llmnas.runs.layout import RunLayout

OK, FAILED, REJECTED, PENDING = "ok", "failed", "rejected", "pending"


@dataclass(frozen=True)
class Trial:
    """One proposal and what became of it; ``proposal`` is None for an evaluation whose proposal line was
    lost, ``evaluation`` None when it never reached the sandbox or is still in flight."""

    proposal: ProposalEvent | None
    evaluation: EvaluationEvent | None = None

    @property
    def round(self) -> int:
        return self.proposal.round if self.proposal is not None else self.evaluation.round

    @property
    def slot(self) -> int | None:
        return self.proposal.slot if self.proposal is not None else None

    @property
    def candidate_id(self) -> str | None:
        return self.proposal.candidate_id if self.proposal is not None else self.evaluation.candidate_id

    @property
    def rejected(self) -> bool:
        """Decided before the sandbox (extract, static, duplicate, llm ...): the proposal holds it all."""
        return self.proposal is not None and self.proposal.stage is not None

    @property
    def status(self) -> str:
        """ok | failed (evaluated, did not pass) | rejected (never reached the sandbox) | pending."""
        if self.rejected:
            return REJECTED
        if self.evaluation is None:
            return PENDING
        return OK if self.evaluation.ok else FAILED

    @property
    def stage(self) -> str | None:
        if self.rejected:
            return self.proposal.stage
        return self.evaluation.stage if self.evaluation is not None else None

    @property
    def message(self) -> str:
        if self.rejected:
            return self.proposal.message
        return self.evaluation.message if self.evaluation is not None else ""

    @property
    def reward(self) -> float | None:
        """The evaluation's; a rejection's as logged, else its stage's; None while pending."""
        if self.rejected:
            p = self.proposal
            return p.reward if p.reward is not None else failure_reward(p.stage)
        return self.evaluation.reward if self.evaluation is not None else None


@dataclass(frozen=True)
class RunView:
    """The projection of a run's log (see the module docstring for its rules)."""

    trials: tuple[Trial, ...]
    evaluations: Mapping[str, EvaluationEvent]  # the latest per candidate, in order of first evaluation
    round_sizes: Mapping[int, int]
    rounds: tuple[RoundEvent, ...]
    refinements: tuple[RefineEvent, ...]
    stopped: tuple[StoppedEvent, ...]
    pauses: tuple[PauseEvent, ...]
    finals: tuple[FinalEvent, ...]
    llm_calls: tuple[LLMCallEvent, ...]
    replies: tuple[tuple[str, tuple[str, ...]], ...]  # recorded model replies (key, texts), in log order
    skipped: tuple[Skipped, ...]
    last_time: str | None  # the last event's time

    @classmethod
    def read(cls, folder: Path) -> RunView:
        """The run folder's log as it is now (a run in progress: a line cut short is skipped)."""
        return cls.fold(replay(RunLayout(folder).events))

    @classmethod
    def fold(cls, log: Replay) -> RunView:
        """The projection of events already read (RunStore.view logs their skipped lines too)."""
        proposals: dict[tuple[int, int], ProposalEvent] = {}
        evaluations: dict[str, EvaluationEvent] = {}
        sizes: dict[int, int] = {}
        for e in log.events:
            if isinstance(e, ProposalEvent):
                proposals[(e.round, e.slot)] = e
                if e.round_size:
                    sizes[e.round] = e.round_size
            elif isinstance(e, EvaluationEvent):
                evaluations[e.candidate_id] = e
        trials, claimed = [], set()
        for key in sorted(proposals):
            p = proposals[key]
            live = p.stage is None and p.candidate_id is not None
            first = live and p.candidate_id not in claimed
            trials.append(Trial(p, evaluations.get(p.candidate_id) if first else None))
            if live:
                claimed.add(p.candidate_id)
        trials += [Trial(None, e) for cid, e in evaluations.items() if cid not in claimed]
        return cls(
            trials=tuple(trials),
            evaluations=MappingProxyType(evaluations),
            round_sizes=MappingProxyType(sizes),
            rounds=tuple(log.of(RoundEvent)),
            refinements=tuple(log.of(RefineEvent)),
            stopped=tuple(log.of(StoppedEvent)),
            pauses=tuple(log.of(PauseEvent)),
            finals=tuple(log.of(FinalEvent)),
            llm_calls=tuple(log.of(LLMCallEvent)),
            replies=tuple((e.key, tuple(e.texts)) for e in log.of(LLMReplyEvent)),
            skipped=tuple(log.skipped),
            last_time=log.events[-1].time if log.events else None,
        )

    @property
    def logged(self) -> frozenset[tuple[int, int]]:
        """The (round, slot) of every proposal logged: a replayed round does not log them again."""
        return frozenset((t.round, t.slot) for t in self.trials if t.proposal is not None)

    @property
    def usage(self) -> Usage:
        """Model calls, tokens and cost logged so far (a new object: budgets carry over a resume)."""
        total = Usage()
        for e in self.llm_calls:
            total.add(e.ok, e.prompt_tokens, e.completion_tokens, e.cost_usd)
        return total

    @property
    def problems(self) -> list[str]:
        """One line per skipped line of the log."""
        return [str(s) for s in self.skipped]

    def spec(self, run_spec: dict) -> dict:
        """The spec in force: ``run_spec`` (run.json's), replaced by the last refinement's."""
        return self.refinements[-1].spec if self.refinements else run_spec
