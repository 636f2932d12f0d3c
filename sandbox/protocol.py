"""The data contract between the driver and a worker: the one module both sides import.

A job travels as JSON into the worker; the worker answers with a JSON result and .npy files in
its private folder. Nothing else crosses the boundary, and nothing crossing it is ever unpickled.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RESULT_FILE = "result.json"
WEIGHTS_FILE = "weights.safetensors"
# The artifact: the trained network as an ONNX graph (data, no code), written by the training process as it
# ends. Everything a candidate is scored on is measured on this file, and it is the file users get.
ONNX_FILE = "model.onnx"
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"  # its graph's names; axis 0 of both is the batch
TRAIN_FILE = "train.json"  # the training process's report to the worker; never leaves the worker
SCORE_DATA = ("val_x.npy", "test_x.npy")  # all the scoring process sees of the data folder
STDOUT_FILE = "stdout.txt"
ARTEFACT_BYTES = 1 << 30
PRED_FILES = {"val": "val_pred.npy", "test": "test_pred.npy"}
DATA_FILES = ("train_x.npy", "train_y.npy", "val_x.npy", "test_x.npy")
MAX_RESULT_BYTES = 1_000_000


# Hard limits: (metric, limit key in a spec or job, unit). over_limits() is the one rule for all of them.
HARD_LIMITS = (
    ("params", "max_params", ""),
    ("model_bytes", "max_bytes", " bytes"),
    ("flops", "max_flops", ""),
    ("latency_ms", "max_latency_ms", " ms"),
    ("latency_b64_ms", "max_latency_ms", " ms"),  # per sample at batch 64: the limit holds at both sizes
    ("peak_mem_mb", "max_memory_mb", " MiB"),
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
    return f"{v:.3g}" if key in ("latency_ms", "latency_b64_ms", "peak_mem_mb") else f"{v:,.0f}"


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
    export = "export"  # the trained model could not be written as an ONNX graph
    timeout = "timeout"
    memory = "memory"
    crash = "crash"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainConfig(_Frozen):
    """Budgeted training, by steps: the same seed gives the same model on any machine load. Early
    stopping on the held-out slice (counted in steps) starts after three quarters of the steps.
    ``shift`` augments images and sequences: each training sample moves by up to this fraction of every
    spatial axis (at least one position), zero-filled. None: 1/8 for images (a translation by a few
    pixels keeps an image's class), none for sequences, whose position may carry meaning; tabular inputs
    are never shifted.

    ``max_seconds`` trains by time instead (whichever of steps or seconds runs out first): the result
    then depends on the machine's load and says so (``Metrics.stopped_on_time``). Without it, wall
    time is only a safety limit (``Limits.timeout_s``) that fails the candidate, never shortens it."""

    max_steps: int = Field(4000, ge=0)
    max_seconds: float | None = Field(None, gt=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-2, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    holdout_fraction: float = Field(0.1, ge=0, lt=0.5)
    eval_every: int = Field(100, ge=1)
    patience: int = Field(10, ge=1)
    shift: float | None = Field(None, ge=0, le=0.5)


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
    num_classes: int = Field(ge=1)  # the output width: classes, or 1 for regression
    task: Literal["classification", "regression"] = "classification"
    seed: int
    train: TrainConfig = TrainConfig()
    max_params: int | None = None
    max_flops: int | None = None
    latency_runs: int = Field(30, ge=1)
    threads: int = Field(1, ge=1)
    device: str = "cpu"
    proxies: tuple[str, ...] = ()
    screen_only: bool = False  # stop after the proxies: a pre-screen, no training
    max_latency_ms: float | None = Field(None, gt=0)  # the spec's limit: re-measure when close to it

    @model_validator(mode="after")
    def _outputs_fit_task(self) -> Job:
        if (self.task == "regression") != (self.num_classes == 1):
            raise ValueError("regression has one output; classification needs num_classes >= 2")
        return self


MAX_COUNT = 2**53  # the largest integer a float64 (and so a JSON reader) holds exactly


class Metrics(_Frozen):
    """What the sandbox measured. Every value is bounded and every float finite: a forged report
    fails validation (the driver then fails the candidate), it cannot poison sorting or sums.

    params, model_bytes, flops, depth, latency and peak memory are measured on the artifact (``ONNX_FILE``)
    by the scoring process, which runs no candidate code: params counts every initializer and constant
    of the graph, model_bytes is the file's size, latency_ms is batch 1 and latency_b64_ms per sample at
    batch 64. The training figures (steps, loss, proxies) come from the process that ran the code."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    params: int = Field(ge=0, le=MAX_COUNT)
    model_bytes: int | None = Field(None, ge=0, le=MAX_COUNT)
    flops: int = Field(ge=0, le=MAX_COUNT)
    depth: int = Field(0, ge=0, le=MAX_COUNT)
    latency_ms: float | None = Field(None, ge=0)
    latency_b64_ms: float | None = Field(None, ge=0)
    latency_iqr_ms: float | None = Field(None, ge=0)
    latency_runs: int = Field(0, ge=0, le=MAX_COUNT)
    peak_mem_mb: float | None = Field(None, ge=0)
    train_seconds: float = Field(0.0, ge=0)
    train_steps: int = Field(0, ge=0, le=MAX_COUNT)
    stopped_on_time: bool = False  # trained by time (TrainConfig.max_seconds): not reproducible
    final_loss: float | None = None
    holdout_acc: float | None = Field(None, ge=0, le=1)  # classification only
    proxies: dict[str, float | None] = {}  # None: the proxy failed or is undefined for this model


class Result(_Frozen):
    """What the worker reports (and the executor adds). Accuracy is absent on purpose: the driver scores
    predictions."""

    candidate_id: str
    ok: bool
    stage: Stage | None = None
    message: str = ""
    metrics: Metrics | None = None
    device: str = "cpu"
    wall_seconds: float = Field(0.0, ge=0, allow_inf_nan=False)
    # Recorded by the worker's supervisor when the training process has exited: the artifact and weights
    # as they were then. The driver checks the files it gets back against them.
    artifact_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")
    weights_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")
    # Set by the executor on the driver (whatever a worker writes here is replaced): the Ray node that
    # answered, and how many times the candidate was run again after its worker died.
    node: str | None = Field(None, max_length=64)
    retries: int = Field(0, ge=0)


def invalid_fields(exc: ValidationError) -> str:
    """A validation error as one line naming each value that was refused and why."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "result"
        got = repr(err.get("input"))
        got = got if len(got) <= 40 else got[:37] + "..."
        parts.append(f"{where} {err['msg'].lower()} (got {got})")
    return "; ".join(parts)
