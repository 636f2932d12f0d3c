"""The search loop: choose → propose → check → evaluate → learn → record, one round at a time.

Work proceeds in rounds of as many proposals as the executor can evaluate at once (asked at the start of
each round: a Ray cluster's room changes as nodes join or leave). Proposals depend only on the seeded
RNG, on rounds already processed (in submission order) and on those round sizes, so the same seed, the
same model replies and the same sizes give the same run, whatever order the workers finish in. Each
proposal logs its round's size, so a resumed round is replayed at the size it had. Each evaluation is appended to events.jsonl the moment
it finishes (search/evaluation.py); the learning state is checkpointed after each round. Resume restores
the last checkpoint and replays the interrupted round: its proposals come out the same, and the
evaluations already on disk are taken from the log instead of being run again.

End-of-round work that the loop does not know by name (best/ export, fine-tuning, interactive
refinement) plugs in as listeners: callables that get the Search and may return False to stop the run.
A pacer (engine/carbon.py) runs after them when the run goes on: it may wait, never change a proposal.

Over 400 lines as one cohesive thing: the steps of a round share the run's learning state (RNG, policy,
archive, proposer, checkpoint), and reading them in order is the point of this file.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llmnas.candidate import checks
from llmnas.config import RunConfig
from llmnas.engine.archive import Archive, Entry
from llmnas.engine.carbon import Clock, Grid
from llmnas.engine.choice import choose
from llmnas.engine.evaluation import Evaluator
from llmnas.engine.interrupt import StopFlag
from llmnas.engine.policy import Policy
from llmnas.engine.reward import reward, violations
from llmnas.errors import RunFailed
from llmnas.execute.base import Executor
from llmnas.llm.chat import BudgetExhausted, EndpointDown, RunEnding
from llmnas.metrics import REPORTED_ONLY, failure_reward, objectives_for, quality, rank_key, scores_text
from llmnas.propose.base import OWN_PARENTS, Action, Operator, Parent, Proposal, Proposer
from llmnas.propose.scaling import scale_budget
from llmnas.runs.events import EvaluationEvent, FinalEvent, ProposalEvent, RoundEvent, StoppedEvent
from llmnas.runs.records import Checkpoint
from llmnas.runs.store import RunStore
from llmnas.runs.view import RunView
from llmnas.task.datasets import Dataset
from llmnas.task.spec import TaskSpec

log = logging.getLogger("llmnas")
PARENTS = 2
MIN_POPULATION = 4  # passing candidates before parents are used: early parents are mostly weak
REPROPOSALS = 3  # a duplicate is proposed again this many times before it counts against the budget

RoundListener = Callable[["Search"], "bool | None"]


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path
    best: Entry | None
    front: list[Entry]
    evaluations: int
    stats: dict
    best_test: dict[str, float] = field(default_factory=dict)  # every test score of the best (reported only)
    final: FinalEvent | None = None  # --final-train: the best trained again on train + validation
    why: str = ""  # one line: what the spec chose and why (engine/choice.py)

    @property
    def best_test_acc(self) -> float | None:
        """The best's test accuracy (reported only: nothing in the search reads it)."""
        return self.best_test.get("test_acc")


@dataclass
class _Slot:
    proposal: Proposal
    candidate_id: str | None = None
    attempts: int = 0
    free: bool = False  # does not count against the budget (see Search.run_round)

    @property
    def live(self) -> bool:
        """Goes on to the sandbox."""
        return self.proposal.stage is None and self.candidate_id is not None


class Search:
    """One run: owns the policy, the archive and the proposer's learning state."""

    def __init__(
        self,
        cfg: RunConfig,
        spec: TaskSpec,
        data: Dataset,
        proposer: Proposer,
        executor: Executor,
        store: RunStore,
        *,
        progress: bool = True,
        listeners: Sequence[RoundListener] = (),
        clock: Clock | None = None,
        grid: Grid | None = None,
        pacer: RoundListener | None = None,
        view: RunView | None = None,
    ):
        """``view``: the run's log as already read (default: read it from ``store`` now)."""
        self.cfg, self.spec, self.data = cfg, spec, data
        self.proposer, self.store = proposer, store
        self.allowed = checks.allowed_imports(cfg.extra_imports)
        self.rng = np.random.default_rng(cfg.seed)
        self.policy = Policy.uniform() if cfg.strategy == "random" else Policy()
        self.archive = archive_for(spec)
        self.round = 0
        self.proposed = 0
        self.known: dict[str, None] = {}  # evaluated ids in processing order (an ordered set)
        self.decisions: dict[str, list[int]] = {}
        self.failures: deque[dict] = deque(maxlen=16)
        self.stats = {
            "proposals": 0,
            "valid_first_try": 0,
            "valid_after_repair": 0,
            "evaluated": 0,
            "passed": 0,
            "duplicates": 0,
            "refunded": 0,  # over a hard limit before training: given back to the budget
        }
        self.best_id: str | None = None
        self.to_scale: list[str] = []  # front members a raised parameter limit leaves room to scale up
        self.scaled: list[str] = []  # candidates the scale operator has taken as parents
        self.budget = cfg.budget
        self.progress = progress
        self.listeners = list(listeners)
        self.pacer = pacer
        self.stop = StopFlag()
        view = view or store.view()
        self._logged = view.logged  # a replayed round's proposals are not logged again
        self._sizes = view.round_sizes  # ... and it keeps its size
        self._size = 0  # proposals the current round counts
        done = dict(view.evaluations)  # the evaluator adds each new one
        self.evaluator = Evaluator(
            cfg, spec, data, executor, store, done, self.stop.as_completed, clock=clock, grid=grid
        )
        if self._restore():
            self.apply_spec(spec)

    # ------------------------------------------------------------------ state
    def _state(self) -> tuple[Checkpoint, bytes]:
        meta, blob = self.proposer.state()
        return Checkpoint(
            round=self.round,
            proposed=self.proposed,
            rng=self.rng.bit_generator.state,
            policy=self.policy.state_dict(),
            archive=self.archive.state_dict(),
            proposer=meta,
            known=list(self.known),
            decisions=self.decisions,
            failures=list(self.failures),
            stats=self.stats,
            best_id=self.best_id,
            spec=self.spec.model_dump(mode="json"),
            to_scale=self.to_scale,
            scaled=self.scaled,
        ), blob

    def _restore(self) -> bool:
        saved = self.store.load_state()
        if saved is None:
            return False
        state, blob = saved
        self.round, self.proposed = state.round, state.proposed
        self.rng.bit_generator.state = state.rng
        self.policy.load_state_dict(state.policy)
        self.archive.load_state_dict(state.archive)
        self.proposer.load_state(state.proposer, blob)
        self.known = dict.fromkeys(state.known)
        self.decisions = state.decisions
        self.failures = deque(state.failures, maxlen=16)
        self.stats |= state.stats
        self.to_scale, self.scaled = state.to_scale, state.scaled
        if state.spec is not None:  # the spec the checkpoint ran under, so that apply_spec sees what changed
            self.spec = TaskSpec.model_validate(state.spec)
        self._choose_best()  # by today's rule, whatever rule wrote the checkpoint
        return True

    def apply_spec(self, spec: TaskSpec) -> None:
        """A refined spec: rebuild the archive from every passing evaluation under the new limits and
        rewards (over-limit candidates leave the grid and the front; a later loosening brings them back).
        A raised parameter limit queues the front's members, best first, for compound scaling."""
        before = self.spec.max_params
        self.spec = self.evaluator.spec = spec
        self.archive = archive_for(spec)
        for cid in self.known:
            e = self.evaluator.done.get(cid)
            if e and e.ok and not violations(e.metrics.numbers(), spec):
                self.archive.add(_entry(e, reward(e.metrics.numbers(), spec)))
        self._choose_best()
        if spec.max_params != before:  # an unchanged limit keeps the queue (a resume mid-way through it)
            raised = before is not None and spec.max_params is not None and spec.max_params > before
            front = sorted(self.archive.front(), key=lambda e: rank_key(e.metrics))
            scales = (
                raised and Operator.scale in self.proposer.operators and "size" not in self.spec.priorities
            )
            self.to_scale = [e.candidate_id for e in front] if scales else []
            if self.to_scale:
                log.info("parameter limit raised: compound-scaling the %d front members first", len(front))

    # ------------------------------------------------------------------ choose, propose, check
    def _parent(self, entry: Entry) -> Parent:
        cid = entry.candidate_id
        return Parent(
            cid,
            self.store.code(cid),
            dict(entry.metrics),
            entry.reward,
            decisions=tuple(self.decisions.get(cid, ())),
        )

    def _operators(self) -> list[Operator]:
        if self.to_scale:  # a raised limit: the front is scaled up before anything else
            return [Operator.scale]
        ops = [op for op in self.proposer.operators if op in (Operator.generate, Operator.repair)]
        n = len(self.archive.all_entries)
        if n >= MIN_POPULATION:
            later = (Operator.mutate, Operator.simplify, Operator.crossover, *OWN_PARENTS)
            ops += [op for op in self.proposer.operators if op in later]
            if Operator.scale in self.proposer.operators and self._growable() is not None:
                ops.append(Operator.scale)
        if not self.failures and Operator.repair in ops:
            ops.remove(Operator.repair)
        return ops

    def _growable(self) -> Entry | None:
        """The best passing candidate at most half the parameter budget and not scaled yet: a good small
        model compound-scaled to the budget (EfficientNet's recipe) rather than left small. Never when the
        words put size among the priorities ("small model"): growing would work against them."""
        room = scale_budget(self.spec)
        if room is None or "size" in self.spec.priorities:
            return None
        small = (
            e
            for e in self.archive.all_entries
            if e.candidate_id not in self.scaled and (e.metrics.get("params") or room) <= room / 2
        )
        return min(small, key=lambda e: rank_key(e.metrics), default=None)

    def _propose(self, action: Action) -> Proposal:
        if action.operator == Operator.repair:
            f = self.failures.popleft()
            parents = [Parent(f["candidate_id"], f["code"], stage=f["stage"], message=f["message"])]
        elif action.operator in (Operator.generate, *OWN_PARENTS):  # no archive parents: no draw from the RNG
            parents = []
        elif action.operator == Operator.scale:
            cid = self.to_scale.pop(0) if self.to_scale else self._growable().candidate_id
            self.scaled.append(cid)
            parents = [self._parent(e) for e in self.archive.all_entries if e.candidate_id == cid]
        else:
            parents = [self._parent(e) for e in self.archive.select(action.selector, PARENTS, self.rng)]
        return self.proposer.propose(action, parents, self.spec, self.rng)

    def _check(self, proposal: Proposal) -> tuple[Proposal, str | None]:
        """Static checks; returns the proposal (with a stage when rejected) and the candidate id."""
        if proposal.code is None:
            return proposal, None
        checked = checks.check(proposal.code, self.allowed, max_bytes=self.cfg.max_candidate_kb * 1024)
        if isinstance(checked, checks.Rejection):
            return replace(proposal, stage=checked.stage, message=checked.message), None
        return replace(proposal, code=checked.code), checked.candidate_id

    def _propose_with_repair(self, action: Action) -> _Slot:
        """Propose; a reply rejected before the sandbox goes straight back to the model to repair."""
        proposal, cid = self._check(self._propose(action))
        slot = _Slot(proposal, cid)
        self.stats["valid_first_try"] += cid is not None
        while (
            cid is None
            and proposal.stage != "llm"  # a failed call is not the model's mistake: nothing to repair
            and (proposal.code or proposal.reply)
            and slot.attempts < self.cfg.repair_attempts
            and "repair" in self.proposer.operators
        ):
            slot.attempts += 1
            fix = Parent(
                "rejected", proposal.code or proposal.reply, stage=proposal.stage, message=proposal.message
            )
            repair = Action(Operator.repair, temperature=action.temperature)
            proposal, cid = self._check(self.proposer.propose(repair, [fix], self.spec, self.rng))
            slot = _Slot(proposal, cid, slot.attempts)
        self.stats["valid_after_repair"] += cid is not None
        return slot

    def _next(self, index: int, seen: set[str], repeated: Action | None = None) -> _Slot:
        """One proposal for slot ``index`` of this round, checked, de-duplicated and recorded. Asked again
        after ``repeated`` wrote a duplicate, it samples hotter than that did: the same request to a model
        that repeats itself would most likely get the same program back."""
        self.stop.check()
        action = self.policy.choose(self.rng, self._operators(), list(self.proposer.variants))
        if repeated is not None:
            hotter = max(action.temperature, self.policy.hotter(repeated.temperature))
            action = replace(action, temperature=hotter)
        slot = self._propose_with_repair(action)
        cid = slot.candidate_id
        if cid is not None and (cid in self.known or cid in seen):
            duplicate = replace(slot.proposal, stage="duplicate", message=f"same code as candidate {cid}")
            slot = _Slot(duplicate, cid, slot.attempts)
        elif cid is not None:
            seen.add(cid)
            p = slot.proposal
            self.store.write_candidate(cid, p.code, p.prompt, p.reply)
        self._log_proposal(slot, index)
        return slot

    def _log_proposal(self, slot: _Slot, index: int) -> None:
        """Append the proposal, unless a resumed round already logged it (replay is exact). Proposals
        that never became candidates keep their prompt and reply under traces/ (for fine-tuning)."""
        p = slot.proposal
        if not slot.live:
            self.store.keep_proposal(self.round, index, p.code, p.prompt, p.reply)
        if (self.round, index) in self._logged:
            return
        self.store.append(
            ProposalEvent(
                round=self.round,
                slot=index,
                candidate_id=slot.candidate_id,
                operator=p.action.operator,
                variant=p.action.variant,
                temperature=p.action.temperature,
                selector=p.action.selector,
                parents=list(p.parent_ids),
                stage=p.stage,
                message=p.message,
                reward=None if p.stage is None else failure_reward(p.stage),
                notes=list(p.notes),
                usage=p.usage,
                decisions=list(p.decisions),
                repairs=slot.attempts,
                round_size=self._size,
            )
        )

    # ------------------------------------------------------------------ a round
    def run_round(self, n: int, bar: tqdm | None) -> None:
        """``n`` proposals that count against the budget. A duplicate is proposed again at once, each time
        sampled hotter (up to REPROPOSALS times), and a candidate the sandbox finds over a hard limit before
        training is given back to the budget (at most ``budget`` of them in a run): neither wastes an
        evaluation."""
        self._size = n
        seen: set[str] = set()
        slots: list[_Slot] = []
        ending: RunEnding | None = None  # the model's budget or endpoint ended the run mid-round
        try:
            for _ in range(n):
                repeated = None
                for attempt in range(REPROPOSALS + 1):
                    slot = self._next(len(slots), seen, repeated)
                    slots.append(slot)
                    if slot.proposal.stage != "duplicate":
                        break
                    slot.free = attempt < REPROPOSALS
                    repeated = slot.proposal.action
        except RunEnding as exc:
            if not slots:
                raise
            ending = exc  # what was proposed is still evaluated and recorded
        live = {i: (s.candidate_id, s.proposal.code) for i, s in enumerate(slots) if s.live}
        evaluated = self.evaluator.evaluate(self.round, live)
        for i, slot in enumerate(slots):
            outcome = evaluated.get(i)
            if (
                outcome is not None
                and _over_limit_before_training(outcome)
                and self.stats["refunded"] < self.budget
            ):
                slot.free = True
                self.stats["refunded"] += 1
            self.stats["duplicates"] += slot.proposal.stage == "duplicate"
            self._learn(slot, outcome)
            line = self._line(slot, outcome) + (" (not counted)" if slot.free else "")
            if bar is not None:
                bar.update(not slot.free)
                bar.write(line)
            else:
                log.info(line)
        self.proposer.end_round(self.rng)
        self.round += 1
        self.proposed += sum(not s.free for s in slots)
        self.store.append(
            RoundEvent(
                round=self.round,
                proposed=self.proposed,
                best=self.best_id,
                policy=self.policy.probabilities(),
            )
        )
        self.store.save_state(*self._state())
        if ending is not None:
            raise ending

    def _learn(self, slot: _Slot, outcome: EvaluationEvent | None) -> None:
        p, cid = slot.proposal, slot.candidate_id
        r = outcome.reward if outcome is not None else failure_reward(p.stage)
        self.policy.update(p.action, r)
        self.proposer.learn(p, r)
        self.stats["proposals"] += 1
        if outcome is None:
            if p.code and p.stage != "duplicate":
                self._remember_failure(cid or "rejected", p.code, str(p.stage), p.message)
            return
        self.known[cid] = None
        self.stats["evaluated"] += 1
        if p.decisions:
            self.decisions[cid] = list(p.decisions)
        if outcome.ok:
            self.stats["passed"] += 1
            self.archive.add(_entry(outcome, r))
            self._choose_best()
        else:
            self._remember_failure(cid, p.code, str(outcome.stage), outcome.message)

    def _remember_failure(self, cid: str, code: str, stage: str, message: str) -> None:
        if stage not in ("budget", "duplicate"):
            self.failures.append({"candidate_id": cid, "code": code, "stage": stage, "message": message})

    def _line(self, slot: _Slot, outcome: EvaluationEvent | None) -> str:
        """One readable line per evaluation (messages are escaped by the event models)."""
        a = slot.proposal.action
        op = a.operator + (
            f"({a.variant})"
            if a.operator in (Operator.mutate, Operator.simplify) and a.variant != "default"
            else ""
        )
        head = f"[{self.stats['proposals']:>4}] {slot.candidate_id or '-':12} {op:22}"
        if outcome is None:
            return f"{head} {slot.proposal.stage}: {slot.proposal.message[:90]}"
        if not outcome.ok:
            return f"{head} {outcome.stage}: {outcome.message[:90]}"
        m, best = outcome.metrics, self.best()
        latency = f"lat {m.latency_ms:.3f} ms " if m.latency_ms is not None else ""
        return (
            f"{head} {scores_text(m.model_dump())} params {m.params:>8,} "
            f"{latency}reward {outcome.reward:.3f}"
            + (f" | best val {quality(best.metrics):.4f}" if best else "")
        )

    # ------------------------------------------------------------------ the whole run
    def run(self, budget: int) -> SearchResult:
        """Rounds until ``budget`` proposals; after each round the listeners run (and may stop the run)."""
        self.budget = budget
        bar = tqdm(
            total=budget,
            initial=self.proposed,
            desc="search",
            unit="cand",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            with self.stop.installed():
                while self.proposed < budget:
                    self.stop.check()
                    self.run_round(self._round_size(budget), bar if self.progress else None)
                    reason = self._end_round()
                    if reason and self.proposed < budget:
                        log.warning("%s", reason)
                        self.store.append(StoppedEvent(reason=reason))
                        break
                    if self.pacer is not None:
                        self.pacer(self)
        except BudgetExhausted as exc:
            log.warning("%s: the run ends here; finished work is saved (raise the budget and resume)", exc)
            self.store.append(StoppedEvent(reason=str(exc)))
        except EndpointDown as exc:
            self.store.append(StoppedEvent(reason=str(exc)))
            raise RunFailed(
                f"{exc}. Finished work is saved; once the endpoint answers: llmnas resume {self.store.folder}"
            ) from None
        finally:
            bar.close()
        return self.result()

    def _round_size(self, budget: int) -> int:
        """Proposals this round counts: what the executor can evaluate at once now (more with a
        pre-screen, which trains only a share), within the budget; a replayed round keeps its size."""
        if self.round in self._sizes:  # not .get(): asking the executor (a Ray cluster) costs a call
            return min(self._sizes[self.round], budget - self.proposed)
        return min(self.round_size, budget - self.proposed)

    def _end_round(self) -> str | None:
        """Run every listener (each one, even after one asked to stop). A listener stops the run by
        answering False (the user said so) or a reason; the reason to stop, or None."""
        answers = [listener(self) for listener in self.listeners]
        reasons = [a for a in answers if isinstance(a, str)]
        return reasons[0] if reasons else ("stopped by the user" if False in answers else None)

    def _choose_best(self) -> None:
        """``best_id``: the spec's choice among the passing candidates (engine/choice.py), made again
        whenever the archive or the spec changes."""
        entries = self.archive.all_entries
        order = choose(entries, lambda e: e.metrics, self.spec).order
        self.best_id = entries[order[0]].candidate_id if order else None

    def best(self) -> Entry | None:
        """The candidate handed back (``best_id``)."""
        return next((e for e in self.archive.all_entries if e.candidate_id == self.best_id), None)

    @property
    def round_size(self) -> int:
        """Proposals per round: what the executor can evaluate at once now, more when pre-screening drops
        some before training."""
        capacity = self.evaluator.executor.capacity()
        return math.ceil(capacity / (self.cfg.prescreen_keep if self.cfg.prescreen else 1))

    @property
    def finished(self) -> bool:
        """The budget is spent: listeners skip work that only helps later rounds."""
        return self.proposed >= self.budget

    def result(self) -> SearchResult:
        best = self.best()
        done = self.evaluator.done.get(best.candidate_id) if best else None
        return SearchResult(
            self.store.folder,
            best,
            self.archive.front(),
            self.stats["evaluated"],
            dict(self.stats),
            {k: v for k, v in done.metrics.model_dump().items() if k in REPORTED_ONLY and v is not None}
            if done
            else {},
            why=choose(self.archive.all_entries, lambda e: e.metrics, self.spec).why,
        )


def archive_for(spec: TaskSpec) -> Archive:
    """An empty archive whose Pareto front counts latency only when the spec has a latency goal."""
    return Archive(objectives=objectives_for(spec.latency_goal))


def _over_limit_before_training(event: EvaluationEvent) -> bool:
    return event.stage == "budget" and not event.metrics.train_steps


def _entry(event: EvaluationEvent, r: float) -> Entry:
    """The archive's view of a passing evaluation: everything but test accuracy, which never steers."""
    metrics = {k: v for k, v in event.metrics.numbers().items() if k not in REPORTED_ONLY}
    return Entry(event.candidate_id, metrics, r, int(metrics.get("depth", 0)))
