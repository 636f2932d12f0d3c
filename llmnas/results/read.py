"""Read a run folder into plain data: candidates in proposal order, the leaderboard, per-operator
statistics and one-line run summaries. No plotting here, so `llmnas list` and `llmnas show` stay fast.

Everything tolerates a run in progress: events.jsonl may be growing or cut mid-line, a candidate may
be proposed but not yet evaluated (``status == "pending"``), and a run may have no events at all.
The log is read through runs/view.RunView, whose rules hold here (a replayed proposal counts once, a
candidate's latest evaluation wins).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmnas.engine.choice import choose
from llmnas.engine.reward import reward
from llmnas.errors import UserError
from llmnas.metrics import front, objectives_for, quality
from llmnas.propose.base import Operator
from llmnas.runs.layout import RunLayout
from llmnas.runs.records import RunRecord
from llmnas.runs.store import RunStore
from llmnas.runs.view import RunView, Trial
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
    operator: Operator | None = None
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
    record: RunRecord  # run.json
    spec: dict  # the spec in force
    requirements: str
    candidates: list[Candidate]
    view: RunView  # the log as read (rounds, refinements, stops, pauses, finals, model calls, skipped lines)

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


def load_run(run_dir: Path) -> RunData:
    """Everything the report, `show` and `list` need, from the run folder as it is right now."""
    store = RunStore.open(run_dir)
    record, paths = store.record, store.paths
    try:
        requirements = paths.requirements.read_text(encoding="utf-8", errors="replace")
    except OSError:
        requirements = str(record.config.get("requirements") or "")
    view = RunView.read(paths.folder)
    spec = view.spec(record.spec)
    candidates = [_candidate(index, t, spec) for index, t in enumerate(view.trials, 1)]
    return RunData(paths.folder, record, spec, requirements, candidates, view)


def _candidate(index: int, t: Trial, spec: dict) -> Candidate:
    """A trial as the report shows it: metrics as plain data, and the limits of ``spec`` it breaks."""
    p, e = t.proposal, t.evaluation
    logged = {} if p is None else {
        "operator": p.operator, "variant": p.variant, "temperature": p.temperature, "selector": p.selector,
        "parents": list(p.parents), "notes": list(p.notes), "repairs": p.repairs, "usage": dict(p.usage),
        "time": p.time,
    }  # fmt: skip
    c = Candidate(index, t.candidate_id, t.round, t.slot, message=t.message, reward=t.reward, **logged)
    if t.rejected:
        c.status, c.stage = "failed", str(t.stage)
    elif e is not None:
        c.evaluated, c.status, c.time = True, t.status, e.time or c.time
        c.stage = None if e.ok else str(e.stage or "unknown")
        c.metrics = e.metrics.model_dump(exclude_none=True)
        if c.ok:
            c.over_limit = over_limits(c.metrics, spec)
    return c


def front_ids(candidates: list[Candidate], spec: TaskSpec) -> set[str]:
    """Ids of the candidates on the Pareto front, over the objectives the search's archive uses."""
    return {
        candidates[i].candidate_id
        for i in front([c.metrics for c in candidates], objectives_for(spec.latency_goal))
    }


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
    on_front = front_ids(board, spec)
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
            "pareto": c.candidate_id in on_front,
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
    return dict(run.view.rounds[-1].policy) if run.view.rounds else {}


def llm_usage(run: RunData) -> dict | None:
    """Model calls, failures, tokens and cost of the run, and the models called (None: no call)."""
    calls = run.view.llm_calls
    if not calls:
        return None
    return asdict(run.view.usage) | {"models": sorted({e.model for e in calls if e.model})}


def summary(run: RunData) -> dict:
    """One run in a few fields: the row of `llmnas list` and the header of the report."""
    cfg = run.record.config
    cs = run.candidates
    board = ranked(run)[0]
    best = board[0] if board else None
    budget = cfg.get("budget") if isinstance(cfg.get("budget"), int) else None
    pending = sum(c.status == "pending" for c in cs)
    if run.view.stopped:
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
        "created": run.record.created or None,
        "requirements": _text(cfg.get("requirements") or run.spec.get("text")),
        "data": cfg.get("data"),
        "llm": cfg.get("llm"),
        "strategy": cfg.get("strategy"),
        "seed": cfg.get("seed") if run.record.seed is None else run.record.seed,
        "budget": budget,
        "proposed": len(cs),
        "evaluated": sum(c.evaluated for c in cs),
        "passed": sum(c.ok for c in cs),
        "failed": sum(c.status == "failed" for c in cs),
        "pending": pending,
        "refinements": len(run.view.refinements),
        "status": status,
        "stopped_reason": run.view.stopped[-1].reason if run.view.stopped else None,
        "last_event": run.view.last_time,
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
