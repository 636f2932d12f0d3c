"""One typed, frozen configuration for a run, passed down as a single object."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sandbox.protocol import Limits, TrainConfig

STRATEGIES = ("rl", "random")


class RunConfig(BaseModel):
    """Everything that decides what a run does; stored in run.json and restored on resume."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requirements: str
    data: str = "digits"
    label_column: str | None = None
    data_root: str | None = None
    max_samples: int | None = Field(None, ge=10)
    seed: int = 0
    budget: int = Field(24, ge=1)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    threads: int = Field(1, ge=1)
    llm: str = "offline"
    strategy: Literal["rl", "random"] = "rl"
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    gpus_per_task: float | None = Field(None, ge=0)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    train: TrainConfig = TrainConfig()
    limits: Limits = Limits()
    extra_imports: tuple[str, ...] = ()
    repair_attempts: int = Field(2, ge=0)
    power_watts: float = Field(20.0, gt=0)  # per worker, for the energy estimate
    carbon_g_per_kwh: float = Field(475.0, ge=0)  # grid carbon intensity (IEA world average)
    finetune_every: int | None = Field(None, ge=1)
    finetune_steps: int = Field(100, ge=1)
    finetune_top_fraction: float = Field(0.25, gt=0, le=1)
    finetune_rank: int = Field(16, ge=1)
    prescreen: Literal["synflow", "naswot", "grad_norm", "snip", "params", "flops"] | None = None
    prescreen_keep: float = Field(0.5, gt=0, le=1)
    llm_timeout_s: float = Field(120.0, gt=0)
    llm_retries: int = Field(5, ge=0)
    llm_concurrency: int = Field(4, ge=1)
    llm_max_tokens: int = Field(2048, ge=16)  # per reply
    max_tokens: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _finetune_needs_a_local_model(self) -> RunConfig:
        if self.finetune_every and not self.llm.startswith("hf:"):
            raise ValueError("--finetune-every needs a local model: --llm hf:PATH")
        return self
