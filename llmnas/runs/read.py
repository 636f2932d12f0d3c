"""Read a run folder into plain data: candidates in proposal order, the leaderboard, per-operator
statistics and one-line run summaries. No plotting here, so `llmnas list` and `llmnas show` stay fast.

Everything tolerates a run in progress: events.jsonl may be growing or cut mid-line, a candidate may
be proposed but not yet evaluated (``status == "pending"``), and a run may have no events at all.
Proposals logged twice (a resumed round is replayed) count once, keyed by (round, slot).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmnas.engine.choice import choose
from llmnas.engine.pareto import objective_vector, objectives_for, pareto_front
from llmnas.engine.reward import FAILURE_REWARDS, reward
from llmnas.errors import UserError
from llmnas.runs.events import (
    EvaluationEvent,
    FinalEvent,
    LLMCallEvent,
    PauseEvent,
    ProposalEvent,
    RefineEvent,
    RoundEvent,
    StoppedEvent,
    quality,
    replay,
)
from llmnas.runs.layout import RunLayout
from llmnas.runs.store import RunStore
from llmnas.task.spec import TaskSpec
from sandbox.protocol import over_limits

SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCORES = ("val_acc", "test_acc", "val_r2", "val_mae", "val_rmse", "test_r2", "test_mae", "test_rmse")


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, NaN, inf, text, bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Candidate:
    """One proposal and what became of it."""

    index: int  # 1-based, in proposal order
    candidate_id: str | None
    round: int | None = None
    slot: int | None = None
    operator: str | None = None
    variant: str | None = None
    temperature: float | None = None
    selector: str | None = None
    parents: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: int = 0
    usage: dict = field(default_factory=dict)
    status: str = "pending"  # ok | failed | pending
    stage: str | None = None
    message: str = ""
    metrics: dict = field(default_factory=dict)
    reward: float | None = None
    over_limit: list[str] = field(default_factory=list)  # limits of the current spec it breaks
    evaluated: bool = False  # went through the sandbox (has an "evaluation" event)
    time: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def safe_id(self) -> str | None:
        """The id when it is safe to use as a file name, else None."""
        cid = self.candidate_id
        return cid if isinstance(cid, str) and SAFE_ID.match(cid) else None

    def metric(self, key: str) -> float | None:
        return number(self.metrics.get(key))

    @property
    def quality(self) -> float | None:
        """The validation score that ranks it (accuracy, or R² for regression)."""
        return number(quality(self.metrics))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass
class RunData:
    folder: Path
    info: dict
    spec: dict
    requirements: str
    candidates: list[Candidate]
    rounds: list[RoundEvent]
    refinements: list[RefineEvent]
    stopped: list[StoppedEvent]
    llm_calls: list[LLMCallEvent]
    last_event_time: str | None
    problems: list[str] = field(default_factory=list)  # log lines that could not be read
    finals: list[FinalEvent] = field(default_factory=list)  # --final-train results, in log order
    pauses: list[PauseEvent] = field(default_factory=list)  # carbon pacing's waits between rounds

    @property
    def passed(self) -> list[Candidate]:
        return [c for c in self.candidates if c.ok]

    @property
    def task_spec(self) -> TaskSpec:
        """The spec in force, typed (a run folder written by hand with an unreadable spec: the defaults)."""
        try:
            return TaskSpec.model_validate(self.spec)
        except ValidationError:
            return TaskSpec()

    @property
    def score_name(self) -> str:
        """What ranks its candidates on validation: "accuracy", or "R²" for a regression."""
        return "R²" if self.spec.get("task") == "regression" else "accuracy"


def current_spec(info: dict, refinements: list[RefineEvent]) -> dict:
    """The spec in force: the run's, replaced by the last refinement."""
    spec = info.get("spec") if isinstance(info.get("spec"), dict) else {}
    return refinements[-1].spec if refinements else spec


def load_run(run_dir: Path) -> RunData:
    """Everything the report, `show` and `list` need, from the run folder as it is right now."""
    paths = RunStore.open(run_dir).paths
    try:
        info = json.loads(paths.run_info.read_text())
    except ValueError as exc:
        raise UserError(f"{paths.run_info} is not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise UserError(f"{paths.run_info} does not hold a JSON object")
    try:
        requirements = paths.requirements.read_text(encoding="utf-8", errors="replace")
    except OSError:
        requirements = str((info.get("config") or {}).get("requirements") or "")
    log_so_far = replay(paths.events)
    proposals: dict[tuple[int, int], ProposalEvent] = {}
    for e in log_so_far.of(ProposalEvent):
        proposals.pop((e.round, e.slot), None)  # a replayed proposal moves to where it was logged again
        proposals[(e.round, e.slot)] = e
    evaluations = {e.candidate_id: e for e in log_so_far.of(EvaluationEvent)}
    refinements = log_so_far.of(RefineEvent)
    spec = current_spec(info, refinements)

    candidates: list[Candidate] = []
    seen: set[str] = set()
    for key in sorted(proposals):
        p = proposals[key]
        c = Candidate(
            index=len(candidates) + 1,
            candidate_id=p.candidate_id,
            round=p.round,
            slot=p.slot,
            operator=p.operator,
            variant=p.variant,
            temperature=p.temperature,
            selector=p.selector,
            parents=list(p.parents),
            notes=list(p.notes),
            repairs=p.repairs,
            usage=dict(p.usage),
            time=p.time,
        )
        if p.stage is not None:  # rejected before the sandbox (static, duplicate, extract, llm ...)
            c.status, c.stage, c.message = "failed", str(p.stage), p.message
            c.reward = p.reward if p.reward is not None else FAILURE_REWARDS.get(c.stage)
        elif c.candidate_id in evaluations and c.candidate_id not in seen:
            _apply(c, evaluations[c.candidate_id], spec)
        if c.candidate_id is not None and p.stage is None:
            seen.add(c.candidate_id)
        candidates.append(c)
    for cid, e in evaluations.items():  # evaluations whose proposal line was lost
        if cid not in seen:
            c = Candidate(index=len(candidates) + 1, candidate_id=cid, round=e.round)
            _apply(c, e, spec)
            candidates.append(c)
            seen.add(cid)
    last = log_so_far.events[-1].time if log_so_far.events else None
    return RunData(
        paths.folder,
        info,
        spec,
        requirements,
        candidates,
        log_so_far.of(RoundEvent),
        refinements,
        log_so_far.of(StoppedEvent),
        log_so_far.of(LLMCallEvent),
        last,
        log_so_far.problems,
        log_so_far.of(FinalEvent),
        log_so_far.of(PauseEvent),
    )


def _apply(c: Candidate, e: EvaluationEvent, spec: dict) -> None:
    c.evaluated = True
    c.status = "ok" if e.ok else "failed"
    c.stage = None if e.ok else str(e.stage or "unknown")
    c.message = e.message
    c.metrics = e.metrics.model_dump(exclude_none=True)
    c.reward = e.reward
    if c.ok:
        c.over_limit = over_limits(c.metrics, spec)
    c.time = e.time or c.time


def front_ids(candidates: list[Candidate], spec: TaskSpec) -> set[str]:
    """Ids of the candidates on the Pareto front, over the objectives the search's archive uses."""
    objectives = objectives_for(spec.latency_goal)
    points = [objective_vector(c.metrics, objectives) for c in candidates]
    senses = [s for _, s in objectives]
    return {candidates[i].candidate_id for i in pareto_front(points, senses)} if points else set()


def ranked(run: RunData, spec: TaskSpec | None = None) -> tuple[list[Candidate], str]:
    """Passing candidates within the limits of ``spec`` (default: the spec in force) in its order
    (engine/choice.py), and one line on why the first, the one handed back, won."""
    spec = spec or run.task_spec
    limits = spec.model_dump()
    pool = sorted((c for c in run.passed if not over_limits(c.metrics, limits)), key=lambda c: c.index)
    picked = choose(pool, lambda c: c.metrics, spec)
    return [pool[i] for i in picked.order], picked.why


def leaderboard_rows(run: RunData) -> list[dict]:
    spec = run.task_spec
    board = ranked(run, spec)[0]
    front = front_ids(board, spec)
    return [
        {
            "rank": rank,
            "candidate_id": c.candidate_id,
            **{k: c.metric(k) for k in SCORES},
            "params": _int(c.metric("params")),
            "flops": _int(c.metric("flops")),
            "latency_ms": c.metric("latency_ms"),
            "reward": reward(c.metrics, spec),  # under the spec in force: never two specs' rewards mixed
            "operator": c.operator,
            "variant": c.variant,
            "round": c.round,
            "pareto": c.candidate_id in front,
        }
        for rank, c in enumerate(board, 1)
    ]


def leaderboard(run_dir: Path) -> list[dict]:
    """Rows for `llmnas show RUN`: rank, candidate_id, the scores (val_acc, test_acc; for regression
    val/test R², MAE, RMSE; test scores are reported only, never used to choose), params, flops, latency_ms, reward, operator, variant, round, pareto."""
    return leaderboard_rows(load_run(run_dir))


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def operator_stats(run: RunData) -> list[dict]:
    """Per operator: proposals, passed, pass rate, mean reward (pending ones not counted)."""
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for c in run.candidates:
        if c.status != "pending":
            groups[c.operator or "?"].append(c)
    rows = []
    for op, cs in groups.items():
        rewards = [c.reward for c in cs if c.reward is not None]
        passed = sum(c.ok for c in cs)
        rows.append(
            {
                "operator": op,
                "count": len(cs),
                "passed": passed,
                "pass_rate": passed / len(cs),
                "mean_reward": sum(rewards) / len(rewards) if rewards else None,
                "best_val": max((v for c in cs if (v := c.quality) is not None), default=None),
            }
        )
    return sorted(rows, key=lambda r: (-r["count"], r["operator"]))


def failure_stages(run: RunData) -> list[dict]:
    """Failures per stage, most frequent first, each with one example message."""
    counts = Counter(c.stage or "unknown" for c in run.candidates if c.status == "failed")
    example = {}
    for c in run.candidates:
        if c.status == "failed" and c.message:
            example.setdefault(c.stage or "unknown", c.message)
    return [{"stage": s, "count": n, "example": example.get(s, "")} for s, n in counts.most_common()]


def policy_probabilities(run: RunData) -> dict[str, dict[str, float]]:
    """The policy's probabilities from the last "round" event ({} before the first round ends)."""
    return dict(run.rounds[-1].policy) if run.rounds else {}


def llm_usage(run: RunData) -> dict | None:
    if not run.llm_calls:
        return None
    total = {"calls": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    for e in run.llm_calls:
        total["calls"] += 1
        total["failures"] += not e.ok
        for key in ("prompt_tokens", "completion_tokens", "cost_usd"):
            total[key] += getattr(e, key)
    models = sorted({e.model for e in run.llm_calls if e.model})
    return total | {"models": models}


def summary(run: RunData) -> dict:
    """One run in a few fields: the row of `llmnas list` and the header of the report."""
    cfg = run.info.get("config") if isinstance(run.info.get("config"), dict) else {}
    cs = run.candidates
    board = ranked(run)[0]
    best = board[0] if board else None
    budget = cfg.get("budget") if isinstance(cfg.get("budget"), int) else None
    pending = sum(c.status == "pending" for c in cs)
    if run.stopped:
        status = "stopped"
    elif not cs:
        status = "empty"
    elif budget is not None and len(cs) >= budget and not pending:
        status = "finished"
    else:
        status = "incomplete"
    events = RunLayout(run.folder).events
    return {
        "run": run.folder.name,
        "path": str(run.folder),
        "created": _text(run.info.get("created")) or None,
        "requirements": _text(cfg.get("requirements") or run.spec.get("text")),
        "data": cfg.get("data"),
        "llm": cfg.get("llm"),
        "strategy": cfg.get("strategy"),
        "seed": run.info.get("seed", cfg.get("seed")),
        "budget": budget,
        "proposed": len(cs),
        "evaluated": sum(c.evaluated for c in cs),
        "passed": sum(c.ok for c in cs),
        "failed": sum(c.status == "failed" for c in cs),
        "pending": pending,
        "refinements": len(run.refinements),
        "status": status,
        "stopped_reason": run.stopped[-1].reason if run.stopped else None,
        "last_event": run.last_event_time,
        "updated": _mtime(events),
        "best": None
        if best is None
        else {
            "candidate_id": best.candidate_id,
            **{k: best.metric(k) for k in SCORES},
            "params": _int(best.metric("params")),
            "latency_ms": best.metric("latency_ms"),
        },
    }


def _mtime(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        return None


def run_row(folder: Path) -> dict:
    """A run's summary; a folder that cannot be read gets status "unreadable" and the reason in "error"."""
    try:
        return summary(load_run(folder))
    except (OSError, ValueError, TypeError, KeyError, UserError) as exc:
        return {"run": folder.name, "path": str(folder), "status": "unreadable", "error": str(exc)}


def runs(results_dir: Path = Path("results"), row: Callable[[Path], dict] = run_row) -> list[dict]:
    """``row`` (default :func:`run_row`) of every run folder under ``results_dir``, oldest first."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir} is not a folder: pass --results DIR")
    out = [row(folder) for folder in sorted(p for p in results_dir.iterdir() if RunLayout(p).is_run())]
    return sorted(out, key=lambda r: (r.get("created") or "", r["run"]))
