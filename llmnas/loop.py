"""The search loop: choose, propose, check, evaluate in the sandbox, score, reward, learn, record.

Work proceeds in rounds of ``workers`` proposals. Proposals depend only on the seeded RNG and on
rounds already processed (in submission order), so the same seed and the same model replies give the
same run, whatever order the workers finish in. Each evaluation is appended to events.jsonl the moment
it finishes; the learning state is checkpointed after each round. Resume restores the last checkpoint
and replays the interrupted round: its proposals come out the same, and the evaluations already on
disk are taken from the log instead of being run again.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from llmnas import validate
from llmnas.archive import Archive, Entry
from llmnas.config import RunConfig
from llmnas.datasets import Dataset
from llmnas.executor import Executor
from llmnas.export import export_candidate
from llmnas.llm import BudgetExhausted
from llmnas.pareto import objectives_for
from llmnas.policy import Policy
from llmnas.proposer import Action, Parent, Proposal, Proposer
from llmnas.reward import failure_reward, reward, violations
from llmnas.scoring import ScoringError, score
from llmnas.spec import TaskSpec
from llmnas.store import RunStore
from llmnas.traces import keep_proposal_files
from sandbox.protocol import Job, Result, Stage

log = logging.getLogger("llmnas")
PARENTS = 2
MIN_POPULATION = 4  # passing candidates before parents are used: early parents are mostly weak


def make_job(
    cfg: RunConfig,
    spec: TaskSpec,
    data: Dataset,
    data_dir: Path,
    cid: str,
    code: str,
    *,
    screen: bool = False,
) -> Job:
    """The sandbox job for one candidate: the spec's hard limits travel with it; ``screen`` stops after
    the pre-screening proxy."""
    return Job(
        proxies=(cfg.prescreen,) if cfg.prescreen else (),
        screen_only=screen,
        save_weights=not screen,
        candidate_id=cid,
        code=code,
        data_dir=str(data_dir),
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=cfg.seed,
        train=cfg.train,
        max_params=spec.max_params,
        max_flops=spec.max_flops,
        max_latency_ms=spec.max_latency_ms,
        threads=cfg.threads,
        device="cuda" if cfg.device == "cuda" else "cpu",
    )


def archive_for(spec: TaskSpec) -> Archive:
    """An empty archive whose Pareto front counts latency only when the spec has a latency goal."""
    goal = spec.max_latency_ms is not None or spec.target_latency_ms is not None
    return Archive(objectives=objectives_for(goal))


def judge(
    result: Result, folder: Path, data: Dataset, spec: TaskSpec, cfg: RunConfig
) -> tuple[bool, str | None, str, dict]:
    """Driver-side verdict on a sandbox result: scored predictions, checked size, hard limits, and
    energy/CO2 estimated from the evaluation's wall time and the configured power and grid intensity."""
    ok, stage, message = result.ok, result.stage.value if result.stage else None, result.message
    if not ok:
        return ok, stage, message, {}
    metrics = result.metrics.model_dump()
    metrics["energy_kwh"] = result.wall_seconds * cfg.power_watts / 3.6e6
    metrics["co2_g"] = metrics["energy_kwh"] * cfg.carbon_g_per_kwh
    try:
        metrics |= score(folder, data.y_val, data.y_test, data.num_classes, metrics["params"])
    except ScoringError as exc:
        return False, "crash", str(exc), {}
    if over := violations(metrics, spec):
        return False, "budget", "; ".join(over), metrics
    return True, None, message, metrics


@dataclass(frozen=True)
class SearchResult:
    run_dir: Path
    best: Entry | None
    front: list[Entry]
    evaluations: int
    stats: dict


@dataclass
class _Slot:
    proposal: Proposal
    candidate_id: str | None = None
    attempts: int = 0


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
    ):
        self.cfg, self.spec, self.data = cfg, spec, data
        self.proposer, self.executor, self.store = proposer, executor, store
        self.allowed = validate.DEFAULT_ALLOWED_IMPORTS | frozenset(cfg.extra_imports)
        self.rng = np.random.default_rng(cfg.seed)
        self.policy = Policy()
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
        }
        self.best_id: str | None = None
        self.progress = progress
        self._interrupted = False
        events = store.events()
        self._cache = {e["candidate_id"]: e for e in events if e.get("type") == "evaluation"}
        self._logged = {(e["round"], e["slot"]) for e in events if e.get("type") == "proposal"}
        if self._restore():
            self.apply_spec(spec)

    # ------------------------------------------------------------------ state
    def _state(self) -> tuple[dict, bytes]:
        meta, blob = self.proposer.state()
        return {
            "round": self.round,
            "proposed": self.proposed,
            "rng": self.rng.bit_generator.state,
            "policy": self.policy.state_dict(),
            "archive": self.archive.state_dict(),
            "proposer": meta,
            "known": list(self.known),
            "decisions": self.decisions,
            "failures": list(self.failures),
            "stats": self.stats,
            "best_id": self.best_id,
        }, blob

    def _restore(self) -> bool:
        saved = self.store.load_state()
        if saved is None:
            return False
        state, blob = saved
        self.round, self.proposed = state["round"], state["proposed"]
        self.rng.bit_generator.state = state["rng"]
        self.policy.load_state_dict(state["policy"])
        self.archive.load_state_dict(state["archive"])
        self.proposer.load_state(state["proposer"], blob)
        self.known = dict.fromkeys(state["known"])
        self.decisions = state["decisions"]
        self.failures = deque(state["failures"], maxlen=16)
        self.stats = state["stats"]
        self.best_id = state["best_id"]
        return True

    def apply_spec(self, spec: TaskSpec) -> None:
        """A refined spec: rebuild the archive from every passing evaluation under the new limits and
        rewards (over-limit candidates leave the grid and the front; a later loosening brings them back)."""
        self.spec = spec
        self.archive = archive_for(spec)
        for cid in self.known:
            e = self._cache.get(cid)
            if e and e["ok"] and not violations(e["metrics"], spec):
                metrics = {k: v for k, v in e["metrics"].items() if isinstance(v, int | float)}
                self.archive.add(
                    Entry(cid, metrics, reward(e["metrics"], spec), int(metrics.get("depth", 0)))
                )
        self._update_best()

    # ------------------------------------------------------------------ one proposal
    def _parent(self, entry: Entry) -> Parent:
        cid = entry.candidate_id
        return Parent(
            cid,
            self.store.code(cid),
            dict(entry.metrics),
            entry.reward,
            decisions=tuple(self.decisions.get(cid, ())),
        )

    def _operators(self) -> list[str]:
        ops = [op for op in self.proposer.operators if op in ("generate", "repair")]
        n = len(self.archive.all_entries)
        if n >= MIN_POPULATION:
            ops += [op for op in self.proposer.operators if op in ("mutate", "simplify")]
        if n >= MIN_POPULATION and "crossover" in self.proposer.operators:
            ops.append("crossover")
        if not self.failures and "repair" in ops:
            ops.remove("repair")
        return ops

    def _propose(self, action: Action) -> Proposal:
        if action.operator == "repair":
            f = self.failures.popleft()
            parents = [Parent(f["candidate_id"], f["code"], stage=f["stage"], message=f["message"])]
        else:
            parents = [self._parent(e) for e in self.archive.select(action.selector, PARENTS, self.rng)]
        return self.proposer.propose(action, parents, self.spec, self.rng)

    def _check(self, proposal: Proposal) -> tuple[Proposal, str | None]:
        """Static checks; returns the proposal (with a stage when rejected) and the candidate id."""
        if proposal.code is None:
            return proposal, None
        checked = validate.check(proposal.code, self.allowed)
        if isinstance(checked, validate.Rejection):
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
            proposal, cid = self._check(
                self.proposer.propose(
                    Action("repair", temperature=action.temperature), [fix], self.spec, self.rng
                )
            )
            slot = _Slot(proposal, cid, slot.attempts)
        self.stats["valid_after_repair"] += cid is not None
        return slot

    # ------------------------------------------------------------------ a round
    def run_round(self, n: int, bar: tqdm | None) -> None:
        slots: list[_Slot] = []
        seen: set[str] = set()
        for i in range(n):
            self._stop_point()
            action = self.policy.choose(self.rng, self._operators(), list(self.proposer.variants))
            slot = self._propose_with_repair(action)
            cid = slot.candidate_id
            if cid is not None and (cid in self.known or cid in seen):
                slot = _Slot(
                    replace(slot.proposal, stage="duplicate", message=f"same code as candidate {cid}"),
                    cid,
                    slot.attempts,
                )
            elif cid is not None:
                seen.add(cid)
                p = slot.proposal
                self.store.write_candidate(cid, p.code, p.prompt, p.reply)
            self._log_proposal(slot, i)
            slots.append(slot)
        self._evaluate(slots, bar)
        self.proposer.end_round(self.rng)
        self.round += 1
        self.proposed += n
        self.store.append(
            {
                "type": "round",
                "round": self.round,
                "proposed": self.proposed,
                "best": self.best_id,
                "policy": self.policy.probabilities(),
            }
        )
        self.store.save_state(*self._state())

    def _log_proposal(self, slot: _Slot, index: int) -> None:
        """Append the proposal, unless a resumed round already logged it (replay is exact). Proposals
        that never became candidates keep their prompt and reply under traces/ (for fine-tuning)."""
        if slot.candidate_id is None or slot.proposal.stage == "duplicate":
            keep_proposal_files(self.store.folder, self.round, index, slot.proposal)
        if (self.round, index) in self._logged:
            return
        p = slot.proposal
        self.store.append(
            {
                "type": "proposal",
                "round": self.round,
                "slot": index,
                "candidate_id": slot.candidate_id,
                "operator": p.action.operator,
                "variant": p.action.variant,
                "temperature": p.action.temperature,
                "selector": p.action.selector,
                "parents": list(p.parent_ids),
                "stage": p.stage,
                "message": p.message,
                "notes": list(p.notes),
                "usage": p.usage,
                "decisions": list(p.decisions),
                "repairs": slot.attempts,
            }
        )

    def _prescreen(self, slots: list[_Slot]) -> None:
        """Zero-cost proxy first: only the round's top ``prescreen_keep`` fraction goes on to training;
        the rest are final, at stage "proxy". Scores of candidates done before a resume come from the log."""
        name = self.cfg.prescreen
        live = [i for i, s in enumerate(slots) if s.proposal.stage is None]
        futures = {
            i: self.executor.submit(
                make_job(
                    self.cfg,
                    self.spec,
                    self.data,
                    self.executor.data_dir,
                    slots[i].candidate_id,
                    slots[i].proposal.code,
                    screen=True,
                ),
                self.store.candidate_dir(slots[i].candidate_id),
            )
            for i in live
            if slots[i].candidate_id not in self._cache
        }
        scores: dict[int, float] = {}
        for i in live:
            cid = slots[i].candidate_id
            if i in futures:
                result = next(iter(self._as_completed([futures[i]]))).result()
                if not result.ok or (over := violations(result.metrics.model_dump(), self.spec)):
                    self._record(
                        slots[i],
                        result
                        if not result.ok
                        else result.model_copy(
                            update={"ok": False, "stage": Stage.budget, "message": "; ".join(over)}
                        ),
                    )
                    continue
                value = result.metrics.proxies.get(name, float("nan"))
            else:
                value = self._cache[cid]["metrics"].get("proxies", {}).get(name, float("nan"))
            scores[i] = value if value is not None and math.isfinite(value) else -math.inf
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        keep = max(1, math.ceil(self.cfg.prescreen_keep * len(ranked))) if ranked else 0
        cut = scores[ranked[keep - 1]] if keep else math.inf
        for i in ranked[keep:]:
            cid = slots[i].candidate_id
            if cid not in self._cache:
                self._final(
                    cid,
                    "proxy",
                    f"screened out: {name} {scores[i]:.4g} below the round's cut {cut:.4g}",
                    {"proxies": {name: scores[i] if math.isfinite(scores[i]) else None}},
                )

    def _final(self, cid: str, stage: str, message: str, metrics: dict) -> dict:
        """Log a failure that the driver decided without (further) sandbox work."""
        event = {
            "type": "evaluation",
            "round": self.round,
            "candidate_id": cid,
            "ok": False,
            "stage": stage,
            "message": message,
            "metrics": metrics,
            "reward": failure_reward(stage),
        }
        self.store.append(event)
        self._cache[cid] = event
        return event

    def _evaluate(self, slots: list[_Slot], bar: tqdm | None) -> None:
        if self.cfg.prescreen:
            self._prescreen(slots)
        futures: dict[int, Future] = {}
        for i, slot in enumerate(slots):
            cid = slot.candidate_id
            if slot.proposal.stage is None and cid not in self._cache:
                job = make_job(
                    self.cfg, self.spec, self.data, self.executor.data_dir, cid, slot.proposal.code
                )
                futures[i] = self.executor.submit(job, self.store.candidate_dir(cid))
        events: dict[int, dict] = {}
        index_of = {f: i for i, f in futures.items()}
        for fut in self._as_completed(futures.values()):
            i = index_of[fut]
            events[i] = self._record(slots[i], fut.result())
        for i, slot in enumerate(slots):
            if slot.proposal.stage is not None:
                event = {
                    "ok": False,
                    "stage": slot.proposal.stage,
                    "message": slot.proposal.message,
                    "reward": failure_reward(slot.proposal.stage),
                    "metrics": {},
                }
            else:
                event = events.get(i) or self._cache[slot.candidate_id]
            self._learn(slot, event)
            if bar is not None:
                bar.update(1)
                bar.write(self._line(slot, event))
            else:
                log.info(self._line(slot, event))

    def _record(self, slot: _Slot, result: Result) -> dict:
        """Score a finished evaluation on the driver side and append it to the log at once."""
        cid = slot.candidate_id
        ok, stage, message, metrics = judge(
            result, self.store.candidate_dir(cid), self.data, self.spec, self.cfg
        )
        event = {
            "type": "evaluation",
            "round": self.round,
            "candidate_id": cid,
            "ok": ok,
            "stage": stage,
            "message": message,
            "metrics": metrics,
            "device": result.device,
            "wall_seconds": result.wall_seconds,
            "reward": reward(metrics, self.spec) if ok else failure_reward(stage),
        }
        self.store.append(event)
        self._cache[cid] = event
        return event

    def _learn(self, slot: _Slot, event: dict) -> None:
        r = float(event["reward"])
        self.policy.update(slot.proposal.action, r)
        self.proposer.learn(slot.proposal, r)
        cid = slot.candidate_id
        self.stats["proposals"] += 1
        if cid is None or slot.proposal.stage == "duplicate":
            if slot.proposal.code and slot.proposal.stage not in (None, "duplicate"):
                self._remember_failure(cid or "rejected", slot.proposal.code, event)
            return
        self.known[cid] = None
        self.stats["evaluated"] += 1
        if slot.proposal.decisions:
            self.decisions[cid] = list(slot.proposal.decisions)
        if event["ok"]:
            self.stats["passed"] += 1
            metrics = {k: v for k, v in event["metrics"].items() if isinstance(v, int | float)}
            self.archive.add(Entry(cid, metrics, r, int(event["metrics"].get("depth", 0))))
            self._update_best()
        else:
            self._remember_failure(cid, slot.proposal.code, event)

    def _remember_failure(self, cid: str, code: str, event: dict) -> None:
        if event["stage"] not in ("budget", "duplicate"):
            self.failures.append(
                {"candidate_id": cid, "code": code, "stage": event["stage"], "message": event["message"]}
            )

    def _update_best(self) -> None:
        best = self.archive.best()
        if best is None and self.best_id is not None:  # a refinement ruled the old best out
            shutil.rmtree(self.store.folder / "best", ignore_errors=True)
            self.best_id = None
        if best is None or best.candidate_id == self.best_id:
            return
        self.best_id = best.candidate_id
        try:
            export_candidate(
                self.store.folder,
                best.candidate_id,
                self.store.folder / "best",
                input_shape=self.data.input_shape,
                num_classes=self.data.num_classes,
                metrics={"candidate": best.candidate_id, **best.metrics, "reward": best.reward},
                title=f"Best model so far: {self.spec.text[:80]}",
            )
        except Exception as exc:  # noqa: BLE001 - a bad artefact must not end the search
            log.warning("could not write best/ for %s: %s", best.candidate_id, exc)

    def _line(self, slot: _Slot, event: dict) -> str:
        a = slot.proposal.action
        op = a.operator + (
            f"({a.variant})" if a.operator in ("mutate", "simplify") and a.variant != "default" else ""
        )
        head = f"[{self.stats['proposals']:>4}] {slot.candidate_id or '-':12} {op:22}"
        if not event["ok"]:
            return f"{head} {event['stage']}: {event['message'][:90]}"
        m = event["metrics"]
        best = self.archive.best()
        return (
            f"{head} val {m['val_acc']:.3f} test {m['test_acc']:.3f} params {m['params']:>8,} "
            f"lat {m['latency_ms']:.3f} ms reward {event['reward']:.3f}"
            + (f" | best val {best.metrics['val_acc']:.3f}" if best else "")
        )

    # ------------------------------------------------------------------ Ctrl-C
    def _on_sigint(self, signum, frame) -> None:
        """First Ctrl-C: stop at the next safe point (never inside scoring or logging); second: at once."""
        if self._interrupted:
            raise KeyboardInterrupt
        self._interrupted = True
        log.warning("stopping: finished evaluations are kept, candidates in flight are dropped")

    def _stop_point(self) -> None:
        if self._interrupted:
            raise KeyboardInterrupt

    def _as_completed(self, futures):
        """Futures as they finish, checking for Ctrl-C every 0.2 s while waiting."""
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            yield from done
            if pending:
                self._stop_point()

    # ------------------------------------------------------------------ the whole run
    def run(self, budget: int, between_rounds: Callable[[Search], bool] | None = None) -> SearchResult:
        """Rounds until ``budget`` proposals; ``between_rounds`` may refine the spec, or return False to stop."""
        self._interrupted = False
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._on_sigint) if main_thread else None
        bar = tqdm(
            total=budget,
            initial=self.proposed,
            desc="search",
            unit="cand",
            disable=not self.progress,
            dynamic_ncols=True,
        )
        try:
            while self.proposed < budget:
                size = math.ceil(self.cfg.workers / (self.cfg.prescreen_keep if self.cfg.prescreen else 1))
                self._stop_point()
                self.run_round(min(size, budget - self.proposed), bar if self.progress else None)
                if between_rounds is not None and self.proposed < budget and not between_rounds(self):
                    self.store.append({"type": "stopped", "reason": "stopped by the user"})
                    break
        except BudgetExhausted as exc:
            log.warning("%s: the run ends here; finished work is saved (raise the budget and resume)", exc)
            self.store.append({"type": "stopped", "reason": str(exc)})
        finally:
            bar.close()
            if main_thread:
                signal.signal(signal.SIGINT, previous)
        return self.result()

    def result(self) -> SearchResult:
        return SearchResult(
            self.store.folder,
            self.archive.best(),
            self.archive.front(),
            self.stats["evaluated"],
            dict(self.stats),
        )
