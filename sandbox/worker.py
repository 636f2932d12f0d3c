"""Evaluate one candidate inside an already confined process and write the result files.

``python -m sandbox.worker JOB.json WORKDIR`` is the fresh-process path; the zygote calls
:func:`run_confined` in a forked child. Both end in the same :func:`run_job`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import linecache
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model

from sandbox import measure
from sandbox.limits import confine, rss_mb
from sandbox.mounts import make_private_tmp
from sandbox.protocol import (
    PRED_FILES,
    RESULT_FILE,
    STDOUT_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    Job,
    Limits,
    Metrics,
    Result,
    Stage,
    TrainConfig,
)
from sandbox.proxies import compute_proxies, count_flops
from sandbox.train import TrainingFailed, predict, train

CANDIDATE_FILE = "candidate.py"
_OOM_MARKERS = ("can't allocate memory", "out of memory", "cannot allocate memory", "std::bad_alloc")


class CandidateFailure(Exception):
    def __init__(self, stage: Stage, message: str):
        super().__init__(message)
        self.stage = stage


def describe(exc: BaseException) -> str:
    """One short line for the repair prompt: the error and where in the candidate it happened."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == CANDIDATE_FILE:
            where = f" (candidate line {frame.lineno}: {(frame.line or '').strip()[:80]})"
    text = f"{type(exc).__name__}: {exc}".strip()
    return (text[:400] + where)[:600]


def _stage_of(exc: BaseException, default: Stage) -> Stage:
    if isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in _OOM_MARKERS):
        return Stage.memory
    return default


def _guard(stage: Stage, fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except CandidateFailure:
        raise
    except BaseException as exc:  # noqa: BLE001 - candidate code may raise anything, SystemExit included
        raise CandidateFailure(_stage_of(exc, stage), describe(exc)) from None


def _build(job: Job) -> torch.nn.Module:
    namespace: dict = {"__name__": "candidate"}
    linecache.cache[CANDIDATE_FILE] = (len(job.code), None, job.code.splitlines(True), CANDIDATE_FILE)
    exec(compile(job.code, CANDIDATE_FILE, "exec"), namespace)  # noqa: S102 - this IS the sandbox
    shape, k = tuple(job.input_shape), job.num_classes
    if callable(namespace.get("build_model")):
        model = namespace["build_model"](shape, k)
    elif isinstance(namespace.get("Model"), type):
        try:
            model = namespace["Model"](shape, k)
        except TypeError:
            model = namespace["Model"]()
    else:
        raise CandidateFailure(Stage.build, "define build_model(input_shape, num_classes) or a Model class")
    if not isinstance(model, torch.nn.Module):
        raise CandidateFailure(
            Stage.build, f"build_model returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _check_shape(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - say what went in, for the repair prompt
        msg = f"forward on input {tuple(x.shape)} failed: {describe(exc)}"
        raise CandidateFailure(_stage_of(exc, Stage.shape), msg) from None
    if not isinstance(out, torch.Tensor):
        raise CandidateFailure(
            Stage.shape, f"forward returned {type(out).__name__}, expected a Tensor of logits"
        )
    want = (x.shape[0], num_classes)
    if tuple(out.shape) != want:
        raise CandidateFailure(
            Stage.shape, f"forward on input {tuple(x.shape)} gave shape {tuple(out.shape)}, expected {want}"
        )


def run_job(job: Job, workdir: Path) -> Result:
    """The evaluation cascade inside the sandbox: build, shape, budget, proxies, train, predict."""
    start = time.perf_counter()
    base_rss = rss_mb()
    device = torch.device(job.device if job.device != "cuda" or torch.cuda.is_available() else "cpu")
    torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    np.random.seed(job.seed % 2**32)
    gen = torch.Generator().manual_seed(job.seed)
    data = {
        name: np.load(Path(job.data_dir) / f"{name}.npy", allow_pickle=False)
        for name in ("train_x", "train_y", "val_x", "test_x")
    }

    def finish(**fields) -> Result:
        return Result(
            candidate_id=job.candidate_id,
            device=device.type,
            wall_seconds=time.perf_counter() - start,
            **fields,
        )

    x_train = torch.from_numpy(data["train_x"]).float()
    y_train = torch.from_numpy(data["train_y"]).long()
    try:
        model = _guard(Stage.build, _build, job)
        _guard(Stage.build, model.to, device)
        _guard(Stage.shape, _check_shape, model, x_train[:2].to(device), job.num_classes)
        example = x_train[:1].to(device)
        params = measure.count_params(model)
        if job.max_params is not None and params > job.max_params:
            raise CandidateFailure(Stage.budget, f"{params:,} parameters > limit {job.max_params:,}")
        flops = _guard(Stage.shape, count_flops, model, example)
        if job.max_flops is not None and flops > job.max_flops:
            raise CandidateFailure(Stage.budget, f"{flops:,} FLOPs > limit {job.max_flops:,}")
        proxies = {}
        if job.proxies:
            n = min(64, len(x_train))
            proxies = _guard(
                Stage.proxy,
                compute_proxies,
                model,
                x_train[:n].to(device),
                y_train[:n].to(device),
                job.proxies,
                seed=job.seed,
            )
        if job.screen_only:
            return finish(
                ok=True,
                metrics=Metrics(params=params, flops=flops, depth=measure.depth(model), proxies=proxies),
            )
        try:
            report = train(model, x_train, y_train, job.train, gen, device)
        except TrainingFailed as exc:
            raise CandidateFailure(Stage.train, str(exc)) from None
        except BaseException as exc:  # noqa: BLE001
            raise CandidateFailure(_stage_of(exc, Stage.train), describe(exc)) from None
        for split, file in PRED_FILES.items():
            logits = _guard(Stage.train, predict, model, torch.from_numpy(data[f"{split}_x"]).float(), device)
            _guard(
                Stage.train, np.save, workdir / file, logits.numpy().astype(np.float32), allow_pickle=False
            )
        lat, iqr = _guard(Stage.train, measure.latency_ms, model, example, job.latency_runs)
        if job.save_weights:
            _guard(Stage.train, save_model, model.cpu(), str(workdir / WEIGHTS_FILE))
            _torchscript(model, example.cpu(), workdir / TORCHSCRIPT_FILE)
        peak = (
            torch.cuda.max_memory_allocated() / 2**20
            if device.type == "cuda"
            else max(0.0, rss_mb("VmHWM") - base_rss)
        )
        metrics = Metrics(
            params=params,
            flops=flops,
            depth=measure.depth(model),
            latency_ms=lat,
            latency_iqr_ms=iqr,
            peak_mem_mb=peak,
            train_seconds=report.seconds,
            train_steps=report.steps,
            final_loss=report.final_loss,
            holdout_acc=report.holdout_acc,
            proxies=proxies,
        )
        return finish(ok=True, metrics=metrics)
    except CandidateFailure as fail:
        return finish(ok=False, stage=fail.stage, message=str(fail))


WARM_UP_CODE = """
import torch.nn as nn
def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Conv1d(input_shape[0], 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.Dropout(0.1),
                         nn.Flatten(), nn.Linear(4 * input_shape[1], num_classes))
"""


def warm_up(folder: Path) -> None:
    """Run a tiny job in-process at one thread, so lazy imports happen before any fork."""
    rng = np.random.default_rng(0)
    for name, arr in (
        ("train_x", rng.normal(size=(32, 2, 6))),
        ("val_x", rng.normal(size=(4, 2, 6))),
        ("test_x", rng.normal(size=(4, 2, 6))),
        ("train_y", rng.integers(0, 3, 32)),
    ):
        np.save(folder / f"{name}.npy", arr, allow_pickle=False)
    job = Job(
        candidate_id="warm-up",
        code=WARM_UP_CODE,
        data_dir=str(folder),
        input_shape=(2, 6),
        num_classes=3,
        seed=0,
        latency_runs=2,
        proxies=("synflow", "naswot", "grad_norm", "snip"),
        train=TrainConfig(max_steps=4, eval_every=2),
    )
    result = run_job(job, folder)
    if not result.ok:
        raise RuntimeError(f"sandbox warm-up failed: {result.stage}: {result.message}")


def preload() -> None:
    """Import what a candidate will need while the interpreter's folders are still readable: the
    user's extra allowed modules, then one tiny in-process evaluation at one thread (lazy imports)."""
    for name in filter(None, os.environ.get("LLMNAS_PRELOAD", "").split(",")):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            print(f"sandbox: cannot preload {name}: {exc}", file=sys.stderr)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        warm_up(Path(folder))


def _torchscript(model: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """A traced TorchScript copy for export, when the model traces; never a failure of the candidate."""
    try:
        with torch.no_grad():
            torch.jit.trace(model.eval(), example, check_trace=False).save(str(path))
    except Exception as exc:  # noqa: BLE001
        print(f"llmnas: no TorchScript export ({type(exc).__name__}: {str(exc)[:200]})")


def write_result(result: Result, workdir: Path) -> None:
    tmp = workdir / (RESULT_FILE + ".tmp")
    tmp.write_text(result.model_dump_json())
    os.replace(tmp, workdir / RESULT_FILE)


def run_confined(job: Job, workdir: Path, limits: Limits, uid: int | None) -> None:
    """In a fresh child: confine, redirect output to capped files, evaluate, write, exit."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(workdir / STDOUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((null, 0), (out, 1), (out, 2)):
        os.dup2(fd, target)
    os.closerange(3, 1 << 16)
    confine(str(workdir), limits, uid, job.threads, cuda=job.device == "cuda")
    code = 0
    try:
        write_result(run_job(job, workdir), workdir)
    except BaseException:  # noqa: BLE001 - report what we can, then leave without cleanup handlers
        traceback.print_exc()
        code = 3
    sys.stdout.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m sandbox.worker", description=__doc__)
    ap.add_argument("job", help="job JSON file")
    ap.add_argument("workdir", help="private working folder of this candidate")
    ap.add_argument("--limits", default="{}", help="Limits as JSON")
    ap.add_argument("--uid", type=int, default=None, help="unprivileged uid to drop to when root")
    args = ap.parse_args(argv)
    job = Job.model_validate_json(Path(args.job).read_text())
    make_private_tmp()
    preload()
    run_confined(job, Path(args.workdir), Limits.model_validate(json.loads(args.limits)), args.uid)


if __name__ == "__main__":
    main()
