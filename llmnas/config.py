"""One typed, frozen configuration for a run, passed down as a single object.

Every setting is declared once, here, with its help text: the command line is generated from these
fields (flag = the field name with dashes, or ``flag`` in its metadata) and the Python API takes the same
names (``llmnas.search(..., steps=200, memory_mb=1024)``). Nested training and sandbox settings that
have flags are listed in NESTED_FLAGS.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmnas.errors import UserError
from sandbox.protocol import Limits, TrainConfig

PROXIES = ("synflow", "naswot", "grad_norm", "snip", "params", "flops")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(min|sec|h|m|s)")


def duration_seconds(text: str) -> float:
    """'90s', '20m', '1h30m', '2h' (or a bare number of seconds) in seconds; ValueError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", compact):
        seconds = float(compact)
    elif compact and _DURATION.sub("", compact) == "":
        scale = {"h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1}
        seconds = sum(float(n) * scale[unit] for n, unit in _DURATION.findall(compact))
    else:
        raise ValueError(f"time_limit {text!r} is not a duration: use e.g. 90s, 20m, 1h30m")
    if seconds <= 0:
        raise ValueError(f"time_limit {text!r} must be longer than zero")
    return seconds


def parse_time(text: str) -> float:
    """An ISO 8601 timestamp (UTC unless it names a zone) in epoch seconds; ValueError otherwise."""
    stamp = datetime.fromisoformat(text.strip())
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def deadline_at(text: str, start: float) -> float:
    """``--deadline``: an ISO time, or a duration (12h, 90m) counted from ``start``; ValueError otherwise."""
    try:
        return parse_time(text)
    except ValueError:
        pass
    try:
        return start + duration_seconds(text)
    except ValueError:
        raise ValueError(
            f"deadline {text!r} is neither a time (2026-12-03T06:00) nor a duration (12h, 90m)"
        ) from None


def resolve_device(requested: str, cuda_available: bool, *, where: str = "here") -> str:
    """``--device`` as cpu or cuda: auto is cuda when CUDA is available ``where`` it runs; cuda without
    it is an error, never a quiet run on the CPU."""
    if requested == "auto":
        return "cuda" if cuda_available else "cpu"
    if requested not in ("cpu", "cuda"):
        raise UserError(f"--device {requested!r}: use cpu, cuda or auto")
    if requested == "cuda" and not cuda_available:
        raise UserError(f"--device cuda: no CUDA device is visible {where}; use --device cpu")
    return requested


def setting(default: Any = None, help: str = "", *, flag: str | None = None, group: str = "search", **kw):
    """A RunConfig field with its command-line face: ``group`` says which commands offer it (data and
    train: search and eval; search: search only; none: only --config and the Python API)."""
    extra = {"group": group, **({"flag": flag} if flag else {})}
    if "default_factory" in kw:
        return Field(description=help, json_schema_extra=extra, **kw)
    return Field(default, description=help, json_schema_extra=extra, **kw)


class RunConfig(BaseModel):
    """Everything that decides what a run does; stored in run.json and restored on resume."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requirements: str = setting(..., group="none")
    data: str = setting(
        "digits",
        "digits | mnist1d | diabetes | FILE.npz | FILE.csv | IMAGE_FOLDER | torchvision:NAME",
        group="data",
    )
    label_column: str | None = setting(None, "label column of a CSV dataset", group="data")
    data_root: str | None = setting(None, "root folder of a torchvision dataset", group="data")
    max_samples: int | None = setting(None, "subsample the data (quick runs)", group="data", ge=10)
    val_fraction: float = setting(
        0.15, "share of the data held out for validation (it chooses the model)", group="data", gt=0, lt=1
    )
    test_fraction: float = setting(
        0.15, "share held out for the test score (reported only; unused where the source has a test split)",
        group="data", gt=0, lt=1,
    )  # fmt: skip
    seed: int = setting(0, "seed of the one RNG the run uses", group="data")
    budget: int = setting(24, "candidates to evaluate", ge=1)
    workers: int | None = setting(
        None,
        "parallel sandboxed workers, the size of a round (default: one per core; with --executor ray, "
        "what the cluster has room for, followed as nodes join or leave; a number caps it)",
        ge=1,
    )
    threads: int = setting(1, "threads per worker", group="none", ge=1)
    llm: str = setting(
        "offline", "offline | openai:MODEL | URL#MODEL | hf:PATH (a model folder or FILE.gguf)"
    )
    llm_mode: Literal["auto", "chat", "completion"] = setting(
        "auto",
        "chat, or completion for base models (the prompt is the start of a Python file; endpoints use "
        "/v1/completions); auto: completion when the model has no chat template",
    )
    strategy: Literal["local", "rl", "random"] = setting(
        "local",
        "without a language model: local (the default, best on bench/search_table.py's tasks): local "
        "search around the best model, with the controller's samples, a policy learning the mix; rl: "
        "every method (controller, aging evolution, local search, predictor-guided proposals, mutations, "
        "crossover), a policy learning which pays; random (the baseline): uniform draws, nothing learned",
    )
    tolerance: float | None = setting(
        None,
        "how much validation score (accuracy, or R²) a size or speed priority may give up: 'small' hands "
        "back the smallest model within this of the best (default: what the words say, e.g. 'within 1 "
        "point of the best', else 0.005)",
        ge=0,
        le=1,
    )
    executor: Literal["local", "ray"] = setting(
        "local",
        "where candidates run: this machine, or a Ray cluster (pip install 'llmnas[ray]'; docs/ray.md)",
    )
    ray_address: str | None = setting(None, "Ray cluster for --executor ray: HOST:6379 or auto")
    gpus_per_task: float | None = setting(
        None, "GPUs per Ray worker (default: 1 when candidates train on cuda)", ge=0
    )
    device: Literal["cpu", "cuda", "auto"] = setting(
        "cpu", "where candidates and an hf: model run (auto: cuda when there is one)", group="train"
    )
    train: TrainConfig = setting(TrainConfig(), group="none")
    limits: Limits = setting(Limits(), group="none")
    extra_imports: tuple[str, ...] = setting(
        (), "extend the candidate import allow-list (repeatable)", flag="allow-import", group="train"
    )
    max_candidate_kb: int = setting(
        200,
        "largest candidate file the driver parses, in KB (a model's reply may be 4x this)",
        group="train",
        ge=1,
    )
    repair_attempts: int = setting(2, "times a rejected reply goes back to the model with its error", ge=0)
    power_watts: float = setting(20.0, "power drawn per worker, for the energy estimate", group="train", gt=0)
    carbon_g_per_kwh: float = setting(
        475.0, "grid gCO2 per kWh, for the CO2 estimate", flag="carbon-intensity", group="train", ge=0
    )
    carbon_forecast: str | None = setting(
        None,
        "CSV of timestamp,gCO2/kWh: pause between rounds to run them in the lowest-carbon windows before "
        "--deadline, and charge each evaluation the intensity at its time",
    )
    deadline: str | None = setting(
        None,
        "with --carbon-forecast, when the run must be done: a time (2026-12-03T06:00, UTC unless it "
        "says) or a duration from the session's start (12h)",
    )
    finetune_every: int | None = setting(
        None, "with --llm hf:PATH, train a LoRA adapter on the best traces every K evaluations", ge=1
    )
    finetune_steps: int = setting(100, "steps per fine-tuning round", ge=1)
    finetune_epochs: float = setting(
        1.0,
        "at most this many passes over a round's examples: fewer steps than --finetune-steps when the "
        "examples are few (4 examples at batch 4: 1 step), since a few passes over a handful of the "
        "model's own outputs teach it to copy them",
        gt=0,
    )
    finetune_top_fraction: float = setting(0.25, "share of the best traces fine-tuned on", gt=0, le=1)
    finetune_rank: int = setting(16, "LoRA rank", ge=1)
    prescreen: Literal["synflow", "naswot", "grad_norm", "snip", "params", "flops", "predictor"] | None = (
        setting(
            None,
            "rank each round's candidates by this zero-cost proxy, or by an accuracy predictor fitted on "
            "the run's own evaluations (predictor), and train only the best",
        )
    )
    prescreen_keep: float = setting(0.5, "fraction of each round trained after --prescreen", gt=0, le=1)
    llm_timeout_s: float = setting(120.0, "seconds per LLM call", flag="llm-timeout", gt=0)
    llm_retries: int = setting(5, "retries on 429/5xx/timeouts", ge=0)
    llm_concurrency: int = setting(4, "LLM calls in flight at once", ge=1)
    llm_max_tokens: int = setting(2048, "longest reply the model may write, in tokens", ge=16)
    max_tokens: int | None = setting(None, "end the run after this many LLM tokens", ge=1)
    max_cost_usd: float | None = setting(
        None,
        "end the run after this LLM cost (USD); a model whose price llmnas does not know needs "
        "--price-in and --price-out",
        flag="max-cost",
        gt=0,
    )
    price_in: float | None = setting(None, "USD per million prompt tokens (overrides the price table)", ge=0)
    price_out: float | None = setting(None, "USD per million completion tokens (with --price-in)", ge=0)
    final_train: bool = setting(
        False,
        "after the search, train the chosen model again on training + validation data and report its test "
        "score once (final/)",
    )
    time_limit: str | None = setting(
        None,
        "end the run at the first round boundary after this much wall time, e.g. 90s, 20m, 1h30m "
        "(resumable; each session, resumed ones too, gets its own)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.time_limit is not None:
            duration_seconds(self.time_limit)  # a clear error now rather than at the first round
        if (self.carbon_forecast is None) != (self.deadline is None):
            raise ValueError("carbon_forecast and deadline (--carbon-forecast, --deadline) go together")
        if self.deadline is not None:
            deadline_at(self.deadline, 0.0)  # a clear error now rather than after the first round
        if self.finetune_every and not self.llm.startswith("hf:"):
            raise ValueError("finetune_every (--finetune-every) needs a local model: llm='hf:PATH'")
        if (self.price_in is None) != (self.price_out is None):
            raise ValueError("price_in and price_out (--price-in, --price-out) go together")
        if (self.ray_address or self.gpus_per_task) and self.executor != "ray":
            raise ValueError(
                "ray_address and gpus_per_task (--ray-address, --gpus-per-task) need executor='ray'"
            )
        return self

    @classmethod
    def from_settings(cls, **settings: Any) -> RunConfig:
        """A config from flat settings named as fields or flags (``steps=200``, ``max_cost=1``); nested
        ``train``/``limits`` dicts merge with the flat ones. Bad values raise UserError naming the setting."""
        fields: dict[str, Any] = {"train": {}, "limits": {}}
        for name, value in settings.items():
            key = name.replace("-", "_")
            if key in NESTED_FLAGS:
                parent, child, _ = NESTED_FLAGS[key]
                fields[parent][child] = value
            elif key in ("train", "limits"):
                fields[key] = {
                    **(value.model_dump() if isinstance(value, BaseModel) else value),
                    **fields[key],
                }
            else:
                fields[FLAG_FIELDS.get(key, key)] = value
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise UserError(describe(exc)) from None


# Nested settings with a flag of their own: flag (underscored) -> (field, nested field, help).
NESTED_FLAGS: dict[str, tuple[str, str, str]] = {
    "steps": ("train", "max_steps", "training steps per candidate"),
    "train_seconds": (
        "train",
        "max_seconds",
        "train by time too: stop after this many seconds (results then depend on load: not reproducible)",
    ),
    "shift": (
        "train",
        "shift",
        "augment by random shifts up to this fraction of each spatial axis (0: none; "
        "unset: 1/8 for images, none for sequences)",
    ),
    "timeout": ("limits", "timeout_s", "hard wall-clock limit per candidate (s)"),
    "memory_mb": ("limits", "memory_mb", "memory limit per candidate (MiB)"),
}
# Flags whose name differs from their field: flag (underscored) -> field.
FLAG_FIELDS: dict[str, str] = {
    (info.json_schema_extra or {})["flag"].replace("-", "_"): name
    for name, info in RunConfig.model_fields.items()
    if (info.json_schema_extra or {}).get("flag")
}


def flag_of(loc: tuple) -> str:
    """The setting a validation error is about, as field and flag."""
    path = tuple(str(p) for p in loc)
    for flag, (parent, child, _) in NESTED_FLAGS.items():
        if path[:2] == (parent, child):
            return f"{flag} (--{flag.replace('_', '-')})"
    if not path:
        return "settings"
    name = path[0]
    info = RunConfig.model_fields.get(name)
    flag = ((info.json_schema_extra or {}).get("flag") if info else None) or name.replace("_", "-")
    return ".".join(path) + (
        f" (--{flag})" if info and (info.json_schema_extra or {})["group"] != "none" else ""
    )


def describe(exc: ValidationError) -> str:
    """A validation error in one line that names the setting (and its flag)."""
    err = exc.errors()[0]
    msg = err["msg"].removeprefix("Value error, ")
    return f"{flag_of(err['loc'])}: {msg}" if err["loc"] else msg
