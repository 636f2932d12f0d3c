"""The scoring process: a fresh confined process that knows only the candidate's code and its saved
weights. It builds the model from the code, loads ``weights.safetensors`` strictly, and writes the
predictions on the validation and test inputs, the latency, FLOPs, depth and peak memory, and (for
export) an ONNX copy of the loaded model: a data graph that users run with onnxruntime instead of the
candidate's code. The driver checks that copy against the predictions; nothing here is trusted.

Nothing the training process kept outside the weights (attributes, closures, globals, hooks, patched
functions) exists here: this process was forked from the worker before any candidate code ran, and
the training process and all it started are dead before it starts. Every function a measurement
calls is bound below at import, before the candidate's module runs here.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model

from sandbox import measure
from sandbox.candidate import CandidateFailure, build, guard, materialise
from sandbox.limits import rss_mb
from sandbox.protocol import (
    ONNX_FILE,
    ONNX_INPUT,
    ONNX_OUTPUT,
    PRED_FILES,
    WEIGHTS_FILE,
    Job,
    Metrics,
    Stage,
)
from sandbox.proxies import count_flops
from sandbox.train import predict

_LOAD_MODEL, _SAFE_OPEN, _NP_SAVE, _NP_LOAD = load_model, safe_open, np.save, np.load
_FROM_NUMPY, _SEED, _THREADS = torch.from_numpy, torch.manual_seed, torch.set_num_threads
_RSS, _MAX_CUDA_MEMORY = rss_mb, torch.cuda.max_memory_allocated
_ONNX_EXPORT = torch.onnx.export
try:  # the TorchScript-based exporter needs the onnx package: imported here, before any candidate code
    import onnx  # noqa: F401

    _HAVE_ONNX = True
except ImportError:
    _HAVE_ONNX = False
ONNX_OPSET = 17


def stored_params(path: Path) -> int:
    """Elements of every tensor in the weights file, read from its header."""
    with _SAFE_OPEN(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118


def load_strict(model: torch.nn.Module, path: Path) -> None:
    """Load exactly the model's state_dict from ``path``: every tensor it has, with its shape, and
    nothing else (tied tensors are stored once). A mismatch fails the candidate (stage crash)."""
    try:
        missing, unexpected = _LOAD_MODEL(model, str(path), strict=False)
    except Exception as exc:  # noqa: BLE001 - unreadable file, wrong shapes
        raise CandidateFailure(Stage.crash, f"cannot load {WEIGHTS_FILE}: {str(exc)[:300]}") from None
    if missing or unexpected:
        raise CandidateFailure(
            Stage.crash,
            f"{WEIGHTS_FILE} does not match the model built from the code: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}",
        )


def _peak_mb(device: torch.device, base_mb: float) -> float:
    if device.type == "cuda":
        return _MAX_CUDA_MEMORY() / 2**20
    return max(0.0, _RSS("VmHWM") - base_mb)


def score(job: Job, workdir: Path, device: torch.device) -> Metrics:
    """Build from the code, load the weights, predict val/test, measure the costs. The returned
    metrics hold the costs only; the worker adds the training report. Failures of the candidate's
    code here keep the stage they had in one process (train); mismatched weights are a crash."""
    _THREADS(job.threads)
    _SEED(job.seed)
    base = _RSS()
    data = {
        s: _FROM_NUMPY(_NP_LOAD(Path(job.data_dir) / f"{s}_x.npy", allow_pickle=False)).float()
        for s in PRED_FILES
    }
    model = guard(Stage.build, build, job)
    guard(Stage.shape, materialise, model, data["val"][:2])
    params = guard(Stage.crash, stored_params, workdir / WEIGHTS_FILE)
    load_strict(model, workdir / WEIGHTS_FILE)
    guard(Stage.build, model.to, device)
    for split, file in PRED_FILES.items():
        logits = guard(Stage.train, predict, model, data[split], device)
        guard(Stage.train, _NP_SAVE, workdir / file, logits.numpy().astype(np.float32), allow_pickle=False)
    example = torch.cat([data["val"][:1], data["test"][:1]])[:1].to(device)
    pair = torch.cat([data["val"][:2], data["test"][:2]])[:2]  # tracing at batch 2 keeps the batch axis free
    flops = guard(Stage.train, count_flops, model, example)
    lat, iqr, runs = guard(
        Stage.train, measure.latency_ms, model, example, job.latency_runs, limit=job.max_latency_ms
    )
    peak = _peak_mb(device, base)
    if job.save_weights:
        _onnx(model.cpu(), pair, workdir / ONNX_FILE)
    return Metrics(
        params=params,
        flops=flops,
        depth=measure.depth(model),
        latency_ms=lat,
        latency_iqr_ms=iqr,
        latency_runs=runs,
        peak_mem_mb=peak,
    )


def _onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """An ONNX copy of the trained model for export, batch axis dynamic, when the model exports; never a
    failure of the candidate. Traced here, in the sandbox: whatever the file holds, the driver loads it
    only as data (standard operators, default CPU provider) and keeps it only when it reproduces the
    predictions this process wrote."""
    if not _HAVE_ONNX:
        print("llmnas: no ONNX export (the onnx package is not installed)")
        return
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _ONNX_EXPORT(
                model.eval(),
                (example,),
                str(path),
                input_names=[ONNX_INPUT],
                output_names=[ONNX_OUTPUT],
                dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
    except Exception as exc:  # noqa: BLE001
        path.unlink(missing_ok=True)
        print(f"llmnas: no ONNX export ({type(exc).__name__}: {str(exc)[:200]})")
