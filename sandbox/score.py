"""The scoring process: the artifact measured, no candidate code run.

A fresh confined process, started once the training process and all it started are dead. It has its
own /tmp, /dev/shm and SysV IPC, and of the pool it sees only its working folder (the artifact,
read-only) and the validation and test inputs (``view``; mounts.scoring_view). It parses
``model.onnx`` (sandbox/graph.py: standard operators only, no external data), runs it with onnxruntime
on the CPU, and writes the predictions on the validation and test inputs; it measures what the graph
stores (params, the file's bytes), its FLOPs, its latency at batch 1 and per sample at batch 64, and
its peak memory. A graph that answers a single sample differently from the same sample in a batch
fails (stage export): one measured at one batch size must be the one used at another.

The driver computes the metrics from the predictions, checks the artifact's hash and applies the limits.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from sandbox import graph, measure
from sandbox.candidate import CandidateFailure
from sandbox.limits import rss_mb
from sandbox.protocol import ARTEFACT_BYTES, ONNX_FILE, ONNX_INPUT, PRED_FILES, Job, Metrics, Stage

BATCH = 256  # rows per run when predicting
WIDE = 64  # the batch whose per-sample latency is measured too
SINGLES = 8  # validation rows also run one at a time, to compare with the batched answers
RTOL, ATOL = 1e-3, 1e-4  # ATOL scales with the largest output


def read_artifact(path: Path) -> bytes:
    """The artifact's bytes: a regular file, at most ARTEFACT_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise CandidateFailure(Stage.export, f"no readable {ONNX_FILE}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CandidateFailure(Stage.export, f"{ONNX_FILE} is not a regular file")
        data = f.read(ARTEFACT_BYTES + 1)
    if len(data) > ARTEFACT_BYTES:
        raise CandidateFailure(Stage.export, f"{ONNX_FILE} is over {ARTEFACT_BYTES:,} bytes")
    return data


def session(data: bytes, threads: int) -> ort.InferenceSession:
    """An onnxruntime session on the CPU provider only, ``threads`` threads, no custom-op libraries."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime refuses the graph
        raise CandidateFailure(Stage.export, f"onnxruntime cannot load {ONNX_FILE}: {_line(exc)}") from None


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(sess.run(None, {ONNX_INPUT: x})[0])
    except Exception as exc:  # noqa: BLE001 - a graph that fails on valid inputs
        raise CandidateFailure(Stage.export, f"{ONNX_FILE} fails on input {x.shape}: {_line(exc)}") from None


def predict(sess: ort.InferenceSession, x: np.ndarray, width: int) -> np.ndarray:
    """The graph's outputs for ``x`` in batches, as float32 shaped (len(x), width)."""
    outs = [_run(sess, x[i : i + BATCH]) for i in range(0, len(x), BATCH)]
    out = np.concatenate(outs) if outs else np.zeros((0, width), np.float32)
    if out.shape != (len(x), width):
        raise CandidateFailure(
            Stage.export, f"{ONNX_FILE} gives outputs shaped {out.shape}, not {(len(x), width)}"
        )
    return out.astype(np.float32)


def check_batches(sess: ort.InferenceSession, x: np.ndarray, batched: np.ndarray) -> None:
    """The first SINGLES rows, one at a time, must give what they gave in a batch."""
    for i in range(min(SINGLES, len(x))):
        alone = _run(sess, x[i : i + 1]).astype(np.float32)
        scale = max(1.0, float(np.abs(batched[i]).max(initial=0.0)))
        if alone.shape != batched[i : i + 1].shape or not np.allclose(
            alone, batched[i : i + 1], rtol=RTOL, atol=ATOL * scale, equal_nan=True
        ):
            raise CandidateFailure(
                Stage.export,
                f"{ONNX_FILE} answers validation row {i} differently alone (batch 1) than in a batch: a model "
                "must compute the same function at every batch size",
            )


def score(job: Job, workdir: Path) -> Metrics:
    """Predict the validation and test inputs with the artifact and measure it. The returned metrics hold
    the artifact's figures only; the worker adds the training report."""
    base = rss_mb()
    data = {
        s: np.load(Path(job.data_dir) / f"{s}_x.npy", allow_pickle=False).astype(np.float32)
        for s in PRED_FILES
    }
    raw = read_artifact(workdir / ONNX_FILE)
    try:
        model = onnx.load_model_from_string(raw)
    except Exception as exc:  # noqa: BLE001 - not a protobuf, truncated, ...
        raise CandidateFailure(Stage.export, f"{ONNX_FILE} does not parse: {type(exc).__name__}") from None
    if why := graph.problem(model, tuple(job.input_shape)):
        raise CandidateFailure(Stage.export, why)
    sess = session(raw, job.threads)
    for split, file in PRED_FILES.items():
        out = predict(sess, data[split], job.num_classes)
        np.save(workdir / file, out, allow_pickle=False)
        if split == "val":
            check_batches(sess, data[split], out)
    rows = np.concatenate([data["val"], data["test"]])
    one, wide = rows[:1], np.resize(rows, (WIDE, *rows.shape[1:]))
    lat, iqr, runs = measure.latency_ms(lambda: _run(sess, one), job.latency_runs, limit=job.max_latency_ms)
    wide_limit = None if job.max_latency_ms is None else job.max_latency_ms * WIDE
    wide_ms, _, _ = measure.latency_ms(
        lambda: _run(sess, wide), max(3, job.latency_runs // 5), limit=wide_limit
    )
    return Metrics(
        params=graph.params(model),
        model_bytes=len(raw),
        flops=graph.flops(model, tuple(job.input_shape)),
        depth=graph.depth(model),
        latency_ms=lat,
        latency_b64_ms=wide_ms / WIDE,
        latency_iqr_ms=iqr,
        latency_runs=runs,
        peak_mem_mb=max(0.0, rss_mb("VmHWM") - base),
    )
