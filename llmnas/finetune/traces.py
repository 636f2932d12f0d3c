"""Proposal traces: one record per proposal, joining what the run folder holds about it.

A trace is (prompt, reply, code, status, reward): a trial of runs/view.RunView (a proposal joined to
its candidate's evaluation) and the candidate's prompt.md / reply.md / model.py. Proposals that never
became a candidate (rejected before the sandbox, duplicates) keep their files under
``traces/r<round>-s<slot>/`` (``RunStore.keep_proposal``). Offline proposals have no prompt: the trace
gets the ``generate`` prompt rendered from the run's spec, so every valid program is still a real
(prompt, completion) pair.

``export_traces`` writes them as JSONL in TRL's conversational prompt-completion format::

    {"prompt": [{"role": "system", ...}, {"role": "user", ...}],
     "completion": [{"role": "assistant", "content": "```python\\n...\\n```"}],
     "messages": [system, user, assistant], "reward": 0.93, "status": "ok", ...}

Pure: reads files only, never imports or runs candidate code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from llmnas.candidate import checks
from llmnas.llm import prompts
from llmnas.propose.base import Operator
from llmnas.runs.layout import CODE, PROMPT, REPLY, RunLayout, refuse_overwrite
from llmnas.runs.records import RunRecord
from llmnas.runs.store import write_atomic
from llmnas.runs.view import FAILED, OK, PENDING, REJECTED, RunView  # noqa: F401 - a trace's statuses
from llmnas.task.spec import TaskSpec


@dataclass(frozen=True)
class Trace:
    """One proposal, as a supervised example and its outcome."""

    round: int
    slot: int
    candidate_id: str | None
    operator: Operator
    system: str
    prompt: str
    reply: str
    code: str | None
    status: str  # ok | failed (evaluated, did not pass) | rejected (never reached the sandbox) | pending
    stage: str | None
    message: str
    reward: float | None
    metrics: dict = field(default_factory=dict)
    synthetic_prompt: bool = False
    temperature: float | None = None

    @property
    def prompt_messages(self) -> list[dict[str, str]]:
        """The chat messages the model was (or would have been) sent: system + user."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.prompt}]

    @property
    def completion(self) -> str:
        """What a good reply looks like: the candidate's code in one ```python block (else the raw reply)."""
        if self.code:
            return f"```python\n{self.code.strip()}\n```"
        return self.reply

    def record(self) -> dict:
        """The JSONL row: TRL's conversational prompt-completion (and language-modelling) columns + metadata."""
        completion = [{"role": "assistant", "content": self.completion}]
        metrics = self.metrics or {}
        return {
            "prompt": self.prompt_messages,
            "completion": completion,
            "messages": self.prompt_messages + completion,
            "reward": self.reward,
            "status": self.status,
            "stage": self.stage,
            "candidate_id": self.candidate_id,
            "operator": self.operator,
            "round": self.round,
            "slot": self.slot,
            "synthetic_prompt": self.synthetic_prompt,
            "val_acc": _number(metrics.get("val_acc")),
            "params": _number(metrics.get("params")),
        }


def collect_traces(run_dir: Path, *, before_round: int | None = None) -> list[Trace]:
    """Every proposal of the run (runs/view.RunView's trials: a replayed round counts once), in order;
    ``before_round`` keeps only rounds < it."""
    paths = RunLayout(run_dir)
    generate_prompt: str | None = None
    system = prompts.render("system")
    out = []
    for t in RunView.read(run_dir).trials:
        if t.proposal is None or (before_round is not None and t.round >= before_round):
            continue
        cid = t.candidate_id
        own = paths.trace(t.round, t.slot)
        cand = paths.candidate(cid) if cid else None
        prompt = _read(own / PROMPT) or (_read(cand / PROMPT) if cand else "")
        reply = _read(own / REPLY) or (_read(cand / REPLY) if cand else "")
        code = _read(own / CODE) or (_read(cand / CODE) if cand else "") or None
        synthetic = False
        if not prompt and code:
            if generate_prompt is None:
                generate_prompt = run_generate_prompt(run_dir)
            prompt, synthetic = generate_prompt, True
        out.append(
            Trace(
                round=t.round,
                slot=t.slot,
                candidate_id=cid,
                operator=t.proposal.operator,
                system=system,
                prompt=prompt,
                reply=reply,
                code=code,
                status=t.status,
                stage=t.stage,
                message=t.message,
                reward=t.reward,
                metrics=t.evaluation.metrics.steering() if t.evaluation is not None else {},
                synthetic_prompt=synthetic,
                temperature=t.proposal.temperature,
            )
        )
    return out


def run_generate_prompt(run_dir: Path) -> str:
    """The ``generate`` prompt the LLM proposer would send for this run's spec and allowed imports."""
    record = RunRecord.read(RunLayout(run_dir).run_info)
    spec = TaskSpec.model_validate(record.spec)
    allowed = checks.allowed_imports(record.config.get("extra_imports") or ())
    contract = prompts.render("contract", allowed_imports=", ".join(sorted(allowed)))
    return prompts.render("generate", spec=prompts.format_spec(spec), contract=contract)


def export_traces(
    run_dir: Path,
    out_path: Path,
    *,
    min_reward: float | None = None,
    traces: Iterable[Trace] | None = None,
    force: bool = False,
) -> int:
    """Write the run's traces (or ``traces``) as JSONL; ``min_reward`` keeps rewarded ones at or above it.
    An existing ``out_path`` is replaced only with ``force``. Returns the number of rows written."""
    if not force:
        refuse_overwrite([Path(out_path)], "traces")
    rows = collect_traces(run_dir) if traces is None else list(traces)
    if min_reward is not None:
        rows = [t for t in rows if t.reward is not None and t.reward >= min_reward]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, "".join(json.dumps(t.record()) + "\n" for t in rows))
    return len(rows)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return ""


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
