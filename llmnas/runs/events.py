"""The run log's schema: every kind of event events.jsonl holds, one pydantic model each, a closed set.

RunStore.append is the one writer; :func:`replay` reads the lines back, and runs/view.RunView folds them
into what every reader uses (resume, show, report, traces, usage accounting, replayed LLM replies). A
line that is cut short, is not JSON, names an unknown kind or holds a value out of range is reported
with its line number and skipped, never fatal.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from llmnas.metrics import REPORTED_ONLY
from llmnas.propose.base import Operator
from llmnas.safe_text import escape_controls
from sandbox.protocol import MAX_COUNT, Stage

SAFE_ID = r"^[A-Za-z0-9_-]{1,64}$"
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Shown = Annotated[str, AfterValidator(escape_controls)]  # text from candidates: safe to print
UpToOne = Annotated[float, Field(le=1, allow_inf_nan=False)]  # R²: 1 is perfect, below 0 worse than the mean


def now(at: float | None = None) -> str:
    """An event's time: now, or ``at`` (epoch seconds, from the run's clock), in UTC to the second."""
    stamp = datetime.now(UTC) if at is None else datetime.fromtimestamp(at, UTC)
    return stamp.isoformat(timespec="seconds")


class Metrics(BaseModel):
    """What an evaluation measured (in the sandbox) and scored (on the driver), every value bounded.
    Test scores are here for the report only: nothing that steers the search reads them."""

    model_config = ConfigDict(frozen=True, extra="allow")

    params: int | None = Field(None, ge=0, le=MAX_COUNT)  # every number the artifact stores
    model_bytes: int | None = Field(None, ge=0, le=MAX_COUNT)  # the artifact's size
    flops: int | None = Field(None, ge=0, le=MAX_COUNT)
    depth: int | None = Field(None, ge=0, le=MAX_COUNT)
    latency_ms: NonNegative | None = None  # batch 1, on the artifact
    latency_b64_ms: NonNegative | None = None  # per sample at batch 64
    latency_iqr_ms: NonNegative | None = None
    latency_runs: int | None = Field(None, ge=0, le=MAX_COUNT)
    peak_mem_mb: NonNegative | None = None
    train_seconds: NonNegative | None = None
    train_steps: int | None = Field(None, ge=0, le=MAX_COUNT)
    stopped_on_time: bool | None = None  # trained by time (--train-seconds): not reproducible
    final_loss: Finite | None = None
    holdout_acc: Fraction | None = None
    val_acc: Fraction | None = None
    val_balanced_acc: Fraction | None = None  # mean recall over the classes
    val_f1: Fraction | None = None  # macro F1
    test_balanced_acc: Fraction | None = None
    test_f1: Fraction | None = None
    val_loss: NonNegative | None = None  # validation cross-entropy (regression: MSE in standard units)
    test_acc: Fraction | None = None
    val_mae: NonNegative | None = None  # regression, in the target's units
    val_rmse: NonNegative | None = None
    val_r2: UpToOne | None = None
    test_mae: NonNegative | None = None
    test_rmse: NonNegative | None = None
    test_r2: UpToOne | None = None
    energy_kwh: NonNegative | None = None
    carbon_g_per_kwh: NonNegative | None = None  # the grid's mean intensity while it ran
    co2_g: NonNegative | None = None
    predicted_acc: Fraction | None = None  # --prescreen predictor's guess, before training
    proxies: dict[str, Finite | None] = {}

    @model_validator(mode="after")
    def _extras_are_plain(self) -> Metrics:
        for key, value in (self.model_extra or {}).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"metric {key} is {value}, not a finite number")
            if not isinstance(value, bool | int | float | str | type(None)):
                raise ValueError(f"metric {key} is a {type(value).__name__}, not a plain value")
        return self

    def numbers(self) -> dict[str, float]:
        """The numeric metrics (proxies aside), for archives, fronts and rewards."""
        return {
            k: v
            for k, v in self.model_dump(exclude={"proxies"}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }

    def steering(self) -> dict[str, Any]:
        """Everything but the test scores: what prompts, traces and fine-tuning may see."""
        return self.model_dump(exclude=set(REPORTED_ONLY), exclude_none=True)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    time: str = Field(default_factory=now)


class ProposalEvent(_Event):
    """One proposal, logged before it is evaluated. ``stage`` and ``reward`` are set when it was decided
    before the sandbox (extract, static, duplicate, llm ...); otherwise its evaluation event holds them."""

    type: Literal["proposal"] = "proposal"
    round: int = Field(ge=0)
    slot: int = Field(ge=0)
    candidate_id: str | None = Field(None, pattern=SAFE_ID)
    operator: Operator
    variant: str = "default"
    temperature: Finite | None = None
    selector: str | None = None
    parents: list[str] = []
    stage: Stage | None = None
    message: Shown = ""
    reward: Finite | None = None
    notes: list[Shown] = []
    usage: dict[str, Any] = {}
    decisions: list[int] = []
    repairs: int = Field(0, ge=0)
    round_size: int | None = Field(None, ge=1)  # proposals the round counts: a resume replays as many


class EvaluationEvent(_Event):
    """A finished evaluation: the sandbox's result, scored and judged on the driver."""

    type: Literal["evaluation"] = "evaluation"
    round: int = Field(ge=0)
    candidate_id: str = Field(pattern=SAFE_ID)
    ok: bool
    stage: Stage | None = None
    message: Shown = ""
    metrics: Metrics = Metrics()
    device: str = "cpu"
    wall_seconds: NonNegative = 0.0
    reward: Finite
    node: str | None = None  # the Ray node that evaluated it (None: this machine)
    retries: int = Field(0, ge=0)  # times it ran again after its worker died
    artifact_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")  # the model.onnx scored and shipped


class FinalEvent(_Event):
    """The chosen model trained again on training + validation data (--final-train): its test scores,
    reported once (validation scores of data it trained on are not kept)."""

    type: Literal["final"] = "final"
    candidate_id: str = Field(pattern=SAFE_ID)
    ok: bool
    stage: Stage | None = None
    message: Shown = ""
    train_samples: int = Field(ge=0)
    metrics: Metrics = Metrics()


class RoundEvent(_Event):
    type: Literal["round"] = "round"
    round: int = Field(ge=0)
    proposed: int = Field(ge=0)
    best: str | None = None
    policy: dict[str, dict[str, Finite]] = {}


class SandboxEvent(_Event):
    """The containment layers in force on this host when the run (or a resume) started."""

    type: Literal["sandbox"] = "sandbox"
    layers: dict[str, str]


class PauseEvent(_Event):
    """The run waits between rounds for a lower-carbon window (engine/carbon.py)."""

    type: Literal["pause"] = "pause"
    until: str
    seconds: NonNegative
    reason: Shown = ""


class StoppedEvent(_Event):
    type: Literal["stopped"] = "stopped"
    reason: Shown


class RefineEvent(_Event):
    """New instructions and the spec derived from all the words so far."""

    type: Literal["refine"] = "refine"
    text: str
    spec: dict[str, Any]


class LLMCallEvent(_Event):
    type: Literal["llm_call"] = "llm_call"
    model: str = ""
    temperature: Finite | None = None
    n: int = 1
    ok: bool
    error: Shown | None = None
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: NonNegative = 0.0
    seconds: NonNegative = 0.0


class LLMReplyEvent(_Event):
    """A model's reply, recorded so that a resumed run replays it instead of asking again."""

    type: Literal["llm_reply"] = "llm_reply"
    key: str
    texts: list[str]


class FinetuneEvent(_Event):
    type: Literal["finetune"] = "finetune"
    ok: bool
    evaluations: int = Field(ge=0)
    error: str | None = None
    adapter: str | None = None
    options: dict[str, Any] = {}
    stats: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _gather_stats(cls, data: Any) -> Any:
        """Training statistics travel in ``stats``; older logs had them at the top level."""
        if isinstance(data, dict):
            known = set(cls.model_fields) | {"type"}
            extra = {k: v for k, v in data.items() if k not in known}
            if extra:
                data = {k: v for k, v in data.items() if k in known}
                data["stats"] = {**extra, **data.get("stats", {})}
        return data


Event = Annotated[
    ProposalEvent
    | EvaluationEvent
    | RoundEvent
    | SandboxEvent
    | StoppedEvent
    | PauseEvent
    | RefineEvent
    | LLMCallEvent
    | LLMReplyEvent
    | FinetuneEvent
    | FinalEvent,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter(Event)


@dataclass(frozen=True)
class Skipped:
    """A line of the log that could not be read: the file's name, the line's number (from 1) and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file} line {self.line} skipped: {self.reason}"


@dataclass
class Replay:
    """The events of a run in log order, and the lines that could not be read."""

    events: list[Event] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def of(self, kind: type[_Event]) -> list:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def problems(self) -> list[str]:
        """One line per skipped line, for logs and reports."""
        return [str(s) for s in self.skipped]


def parse_line(line: str) -> Event:
    """One line of events.jsonl as a typed event (raises ValueError with a short reason)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}; a line cut short by a kill?)") from None
    try:
        return _EVENT.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {err['msg']}"[:300]) from None


def replay(path: Path) -> Replay:
    """Read events.jsonl; unreadable lines are skipped and reported by number."""
    out = Replay()
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.events.append(parse_line(line))
        except ValueError as exc:
            out.skipped.append(Skipped(Path(path).name, number, str(exc)))
    return out


def dump(event: _Event) -> str:
    """One line of events.jsonl (the same layout as llmnas 0.1 wrote)."""
    return json.dumps(event.model_dump(mode="json"))
