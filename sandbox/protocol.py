"""The data contract between the driver and a worker: the one module both sides import.

A job travels as JSON into the worker; the worker answers with a JSON result and .npy files in
its private folder. Nothing else crosses the boundary, and nothing crossing it is ever unpickled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

RESULT_FILE = "result.json"
WEIGHTS_FILE = "weights.safetensors"
TORCHSCRIPT_FILE = "model.torchscript.pt"  # optional: written when the model traces
STDOUT_FILE = "stdout.txt"
ARTEFACT_BYTES = 1 << 30
PRED_FILES = {"val": "val_pred.npy", "test": "test_pred.npy"}
DATA_FILES = ("train_x.npy", "train_y.npy", "val_x.npy", "test_x.npy")
MAX_RESULT_BYTES = 1_000_000
MAX_PARAMS = 2**53  # larger counts are forged: no float64 holds them exactly
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")  # not counted as parameters


# Hard limits: (metric, limit key in a spec or job, unit). over_limits() is the one rule for all of them.
HARD_LIMITS = (
    ("params", "max_params", ""),
    ("flops", "max_flops", ""),
    ("latency_ms", "max_latency_ms", " ms"),
)


def over_limits(metrics: Mapping[str, Any], limits: Mapping[str, Any]) -> list[str]:
    """Hard limits the metrics break, one readable line each ("params 12,345 > limit 10,000"); a limited
    metric that is missing breaks its limit. Limits absent from ``limits`` (or None) are not checked."""
    out = []
    for key, limit_key, unit in HARD_LIMITS:
        limit = limits.get(limit_key)
        if limit is None:
            continue
        value = metrics.get(key)
        if not isinstance(value, int | float) or value != value:  # missing or NaN
            out.append(f"{key} not measured (limit {_fmt_limit(key, limit)}{unit})")
        elif value > limit:
            out.append(f"{key} {_fmt_limit(key, value)} > limit {_fmt_limit(key, limit)}{unit}")
    return out


def _fmt_limit(key: str, v: float) -> str:
    return f"{v:.3g}" if key == "latency_ms" else f"{v:,.0f}"


SAFE_ENV = ("PATH", "LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def scrubbed_env(threads: int, home: str) -> dict[str, str]:
    """The whole environment a worker process gets: no keys, no tokens, fixed thread counts."""
    env = {k: os.environ[k] for k in SAFE_ENV if k in os.environ}
    env.update({v: str(threads) for v in THREAD_VARS})
    env.update(HOME=home, TMPDIR=home, PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
    return env


class Stage(StrEnum):
    """Where a candidate failed, cheapest first."""

    llm = "llm"  # the language model call failed: not the model's mistake
    extract = "extract"
    static = "static"
    duplicate = "duplicate"
    build = "build"
    shape = "shape"
    budget = "budget"
    proxy = "proxy"
    train = "train"
    timeout = "timeout"
    memory = "memory"
    crash = "crash"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainConfig(_Frozen):
    """Budgeted training: whichever of steps or seconds runs out first ends it. Early stopping on the
    held-out slice starts after three quarters of the steps, once the schedule has done its work."""

    max_steps: int = Field(4000, ge=0)
    max_seconds: float = Field(60.0, gt=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    holdout_fraction: float = Field(0.1, ge=0, lt=0.5)
    eval_every: int = Field(100, ge=1)
    patience: int = Field(10, ge=1)


class Limits(_Frozen):
    """Operating-system limits for one candidate process."""

    timeout_s: float = Field(120.0, gt=0)
    memory_mb: int = Field(2048, ge=64)
    cpu_s: int = Field(300, ge=1)
    file_mb: int = Field(64, ge=1)
    nproc: int = Field(64, ge=1)
    nofile: int = Field(256, ge=16)
    stdout_bytes: int = Field(65536, ge=0)
    audit_hook: bool = True  # tests turn it off to show that the OS layers hold on their own


class Job(_Frozen):
    """Everything a worker needs to evaluate one candidate."""

    candidate_id: str
    code: str
    data_dir: str
    input_shape: tuple[int, ...]
    num_classes: int = Field(ge=2)
    seed: int
    train: TrainConfig = TrainConfig()
    max_params: int | None = None
    max_flops: int | None = None
    latency_runs: int = Field(30, ge=1)
    threads: int = Field(1, ge=1)
    device: str = "cpu"
    proxies: tuple[str, ...] = ()
    screen_only: bool = False  # stop after the proxies: a pre-screen, no training
    save_weights: bool = True


class Metrics(_Frozen):
    params: int
    flops: int
    depth: int = 0
    latency_ms: float | None = None
    latency_iqr_ms: float | None = None
    peak_mem_mb: float | None = None
    train_seconds: float = 0.0
    train_steps: int = 0
    final_loss: float | None = None
    holdout_acc: float | None = None
    proxies: dict[str, float] = {}


class Result(_Frozen):
    """What the worker reports. Accuracy is absent on purpose: the driver scores predictions."""

    candidate_id: str
    ok: bool
    stage: Stage | None = None
    message: str = ""
    metrics: Metrics | None = None
    device: str = "cpu"
    wall_seconds: float = 0.0
