"""Evaluate one candidate in two confined processes and write the result files.

Over 400 lines as one cohesive thing: the two stages and the supervisor that orders them share the
job, the folder protocol and the failure rules; reading them together is how to check no state leaks.

``python -m sandbox.worker JOB.json WORKDIR`` is the fresh-process path; the zygote calls
:func:`run_confined` in a forked child. Either way that process never runs candidate code: it
supervises two children forked from it and confined alike (sandbox/limits.py):

1. training, the only process that runs candidate code: build, shape, budget, proxies, train to the
   step budget, save ``weights.safetensors``, write the artifact ``model.onnx`` (sandbox/artifact.py),
   report to ``train.json``;
2. scoring (sandbox/score.py), started once the training process and all it started are dead and the
   folder holds nothing but the weights and the artifact, both sealed (hashed, rewritten read-only):
   in namespaces of its own with a view of the pool holding only its folder and the validation and
   test inputs, it runs the artifact with onnxruntime and measures it.

So the predictions and costs are those of the file users get, measured by a process that runs no code
of the candidate's and inherits nothing the training process kept.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import importlib
import json
import math
import os
import resource
import select
import signal
import stat
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_model

from sandbox import artifact, measure, score, view
from sandbox.candidate import CandidateFailure, build, check_shape, describe, guard, stage_of
from sandbox.cell import folder_full
from sandbox.cleanup import remove_tree
from sandbox.limits import confine
from sandbox.mounts import make_private_tmp, scoring_view
from sandbox.protocol import (
    ARTEFACT_BYTES,
    DATA_FILES,
    MAX_RESULT_BYTES,
    ONNX_FILE,
    RESULT_FILE,
    SCORE_DATA,
    STDOUT_FILE,
    TRAIN_FILE,
    WEIGHTS_FILE,
    Job,
    Limits,
    Metrics,
    Result,
    Stage,
    TrainConfig,
    over_limits,
)
from sandbox.proxies import compute_proxies, count_flops
from sandbox.train import TrainingFailed, TrainingTimeout, task_loss, train

_CLOCK = time.perf_counter  # bound before any candidate code runs: a rebinding cannot skew reports
SCORING_SHARE = 0.2  # of the time limit, kept for the scoring process after training
_PR_SET_PDEATHSIG = 1
TRAIN_DATA = DATA_FILES[:2]  # training inputs and labels (protocol.DATA_FILES)
TIMEOUT_HINT = "raise the time limit (--timeout) or lower the step budget (--steps)"


def _device(job: Job) -> torch.device:
    """The job's device; a CUDA job on a worker that sees no GPU fails, it never trains on the CPU."""
    if job.device == "cuda" and not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise CandidateFailure(
            Stage.crash,
            f"this worker sees no CUDA device (CUDA_VISIBLE_DEVICES={visible!r}) but the run trains on "
            "cuda: give every worker a GPU, or use --device cpu",
        )
    return torch.device(job.device)


def _result(job: Job, start: float, **fields) -> Result:
    return Result(
        candidate_id=job.candidate_id,
        device=job.device,
        wall_seconds=_CLOCK() - start,
        **fields,
    )


def _screen(job: Job, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Metrics:
    """Cheap checks before training: parameter and FLOP budgets, then the zero-cost proxies."""
    device = _device(job)
    params = measure.count_params(model)
    if over := over_limits({"params": params}, {"max_params": job.max_params}):
        raise CandidateFailure(Stage.budget, over[0])
    flops = guard(Stage.shape, count_flops, model, x[:1].to(device))
    if over := over_limits({"flops": flops}, {"max_flops": job.max_flops}):
        raise CandidateFailure(Stage.budget, over[0])
    proxies = {}
    if job.proxies:
        n = min(64, len(x))
        args = (model, x[:n].to(device), y[:n].to(device), job.proxies)
        scores = guard(Stage.proxy, compute_proxies, *args, seed=job.seed, loss=task_loss(job.task))
        proxies = {k: None if math.isnan(v) else v for k, v in scores.items()}  # failed or undefined
    return Metrics(params=params, flops=flops, depth=measure.depth(model), proxies=proxies)


def _fit(job: Job, model: torch.nn.Module, x, y, gen, deadline: float | None):
    try:
        return train(model, x, y, job.train, gen, _device(job), deadline, job.task)
    except TrainingTimeout as exc:
        raise CandidateFailure(Stage.timeout, f"{exc}: {TIMEOUT_HINT}") from None
    except TrainingFailed as exc:
        raise CandidateFailure(Stage.train, str(exc)) from None
    except BaseException as exc:  # noqa: BLE001
        raise CandidateFailure(stage_of(exc, Stage.train), describe(exc)) from None


def train_stage(job: Job, workdir: Path, deadline: float | None = None) -> Result:
    """The training process's cascade: build, shape, budget, proxies, train, save the weights.

    ``deadline`` (``time.monotonic()``) is the safety limit on training (stage timeout)."""
    start = _CLOCK()
    torch.set_num_threads(job.threads)
    torch.manual_seed(job.seed)
    np.random.seed(job.seed % 2**32)
    gen = torch.Generator().manual_seed(job.seed)
    x, y = (torch.from_numpy(np.load(Path(job.data_dir) / f, allow_pickle=False)) for f in TRAIN_DATA)
    x, y = x.float(), (y.long() if job.task == "classification" else y.float())
    try:
        device = _device(job)
        model = guard(Stage.build, build, job)
        guard(Stage.build, model.to, device)
        guard(Stage.shape, check_shape, model, x[:2].to(device), job.num_classes)
        metrics = _screen(job, model, x, y)
        if job.screen_only:
            return _result(job, start, ok=True, metrics=metrics)
        report = _fit(job, model, x, y, gen, deadline)
        guard(Stage.train, save_model, model.cpu(), str(workdir / WEIGHTS_FILE))
        guard(Stage.export, artifact.write, model, x[:2], workdir / ONNX_FILE)
    except CandidateFailure as fail:
        return _result(job, start, ok=False, stage=fail.stage, message=str(fail))
    trained = metrics.model_copy(
        update={
            "train_seconds": report.seconds,
            "train_steps": report.steps,
            "final_loss": None if math.isnan(report.final_loss) else report.final_loss,
            "holdout_acc": report.holdout_acc,
            "stopped_on_time": report.stopped_on_time,
        }
    )
    return _result(job, start, ok=True, metrics=trained)


def score_stage(job: Job, workdir: Path, trained: Result, start: float, seals: dict[str, str]) -> Result:
    """The scoring process: the artifact's predictions and costs added to the training report (which
    the worker read before this process existed), with the seals the worker recorded."""
    try:
        costs = score.score(job, workdir)
    except CandidateFailure as fail:
        return _result(job, start, ok=False, stage=fail.stage, message=str(fail), **seals)
    metrics = trained.metrics.model_copy(update=costs.model_dump(exclude_unset=True))
    return _result(job, start, ok=True, metrics=metrics, **seals)


def run_job(job: Job, workdir: Path) -> Result:
    """Both stages in this one process, unconfined: only for the warm-up, which runs trusted code."""
    start = _CLOCK()
    trained = train_stage(job, workdir)
    if not trained.ok or job.screen_only:
        return trained
    return score_stage(job, workdir, trained, start, seal(workdir))


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


def write_result(result: Result, workdir: Path, name: str = RESULT_FILE) -> None:
    tmp = workdir / (name + ".tmp")
    tmp.write_text(result.model_dump_json())
    os.replace(tmp, workdir / name)


# --------------------------------------------------------------------------- the supervisor
def _die_with_parent() -> None:
    """Be killed with the supervisor (a timeout kills it): PR_SET_PDEATHSIG, set before confining.
    Dropping to another uid clears it; then the zygote's kill of that uid does the same job."""
    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _spawn(
    body: Callable[[], None],
    job: Job,
    workdir: Path,
    limits: Limits,
    uid: int | None,
    setup: Callable[[], object] | None = None,
) -> int:
    """Fork a child that runs ``setup`` (still privileged), confines itself, runs ``body`` and exits: 0
    when ``body`` returned."""
    pid = os.fork()
    if pid:
        return pid
    code = 3
    try:
        _die_with_parent()
        if setup is not None:
            setup()
        confine(str(workdir), limits, uid, job.threads, cuda=job.device == "cuda")
        body()
        code = 0
    except BaseException:  # noqa: BLE001 - report what we can, then leave without cleanup handlers
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _has_processes(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    return True
    return False


def kill_uid(uid: int | None) -> None:
    """As root, kill every process of the candidate's uid: catches those that left its group. The
    fork this takes (tens of ms for a process holding torch) happens only when one is left."""
    if uid is None or os.geteuid() != 0 or not _has_processes(uid):
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _wait(pid: int, deadline: float, uid: int | None) -> int | None:
    """The child's wait status, or None when it was killed at ``deadline``; afterwards nothing it
    started is left running (its process group, and as root its whole uid, are killed)."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
    finally:
        os.close(fd)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    kill_uid(uid)
    return status if ready else None


def _mirror(status: int) -> None:
    """End this process the way the child ended, so the zygote reports it as before."""
    if os.WIFSIGNALED(status):
        _die_by(os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 3)


def _die_by(sig: int) -> None:
    """End this process by ``sig`` (no core dump): the executor's signal table names the cause."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(OSError, ValueError):
        signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(3)


def _clear(workdir: Path, keep: tuple[str, ...]) -> None:
    """Remove everything the training process left but the regular files named in ``keep`` (deep,
    unreadable or huge trees included: remove_tree never recurses and never raises)."""
    for entry in os.scandir(workdir):
        if entry.name in keep and entry.is_file(follow_symlinks=False):
            continue
        if entry.is_dir(follow_symlinks=False):
            remove_tree(Path(entry.path))
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _sealed(path: Path) -> str:
    """Rewrite the file at ``path`` as a fresh read-only file of this process's own (a link, a special
    file, a hard link or an oversized file fails the candidate); its SHA-256."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        raise CandidateFailure(Stage.crash, f"the training process left no {path.name}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or info.st_size > ARTEFACT_BYTES:
            raise CandidateFailure(
                Stage.crash, f"{path.name} is not a plain file of at most {ARTEFACT_BYTES:,} bytes"
            )
        data = f.read(ARTEFACT_BYTES + 1)
    os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def seal(workdir: Path) -> dict[str, str]:
    """The artifact and the weights as the training process left them, sealed: the Result's hashes."""
    return {
        "artifact_sha256": _sealed(workdir / ONNX_FILE),
        "weights_sha256": _sealed(workdir / WEIGHTS_FILE),
    }


def _read_report(path: Path, job: Job) -> Result | None:
    """The training process's report, or None when it left none that is valid and its own."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        try:
            report = Result.model_validate_json(f.read(MAX_RESULT_BYTES))
        except (OSError, ValueError):
            return None
    ok = report.candidate_id == job.candidate_id and (not report.ok or report.metrics is not None)
    return report if ok else None


def _timed_out(job: Job, limits: Limits, start: float, during: str) -> Result:
    msg = (
        f"exceeded the {limits.timeout_s:g} s time limit and was killed while {during}: "
        f"the {job.train.max_steps}-step training budget and scoring did not finish in time; {TIMEOUT_HINT}"
    )
    return _result(job, start, ok=False, stage=Stage.timeout, message=msg)


def _supervise(job: Job, workdir: Path, limits: Limits, uid: int | None) -> Result | None:
    """Train in one child, then score in a fresh one; None when the scorer wrote the result."""
    start, now = _CLOCK(), time.monotonic()
    budget = limits.timeout_s - min(2.0, 0.1 * limits.timeout_s)  # the zygote kills at timeout_s
    end, train_end = now + budget, now + budget * (1 - SCORING_SHARE)
    trainer = _spawn(
        lambda: write_result(train_stage(job, workdir, train_end), workdir, TRAIN_FILE),
        job,
        workdir,
        limits,
        uid,
    )
    status = _wait(trainer, end, uid)
    report = _read_report(workdir / TRAIN_FILE, job) if status == 0 else None
    if report is None and status is not None and folder_full(workdir):
        _die_by(signal.SIGXFSZ)  # the candidate filled its working folder: no room was left for a report
    scored = report is not None and report.ok and not job.screen_only
    _clear(workdir, (WEIGHTS_FILE, ONNX_FILE, STDOUT_FILE) if scored else (STDOUT_FILE,))
    if status is None:
        return _timed_out(job, limits, start, "training")
    if status != 0:
        _mirror(status)
    if report is None:
        msg = "the training process exited without a valid report (did the candidate end the process?)"
        return _result(job, start, ok=False, stage=Stage.crash, message=msg)
    if not report.ok or job.screen_only:
        return report
    try:
        seals = seal(workdir)
    except CandidateFailure as fail:
        return _result(job, start, ok=False, stage=fail.stage, message=str(fail))
    scorer = _spawn(
        lambda: write_result(score_stage(job, workdir, report, start, seals), workdir),
        job,
        workdir,
        limits,
        uid,
        setup=lambda: scoring_view(job.data_dir, str(workdir), SCORE_DATA, limits.file_mb),
    )
    status = _wait(scorer, end, uid)
    if status is None:
        _clear(workdir, (STDOUT_FILE,))
        return _timed_out(job, limits, start, "scoring")
    if status != 0:
        _mirror(status)
    return None


def run_confined(job: Job, workdir: Path, limits: Limits, uid: int | None) -> None:
    """In a fresh child of the zygote: redirect output to a capped file, supervise the training and
    scoring processes, write the result when they could not, exit."""
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(workdir / STDOUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for fd, target in ((null, 0), (out, 1), (out, 2)):
        os.dup2(fd, target)
    os.closerange(3, 1 << 16)
    code = 0
    try:
        result = _supervise(job, workdir, limits, uid)
        if result is not None:
            write_result(result, workdir)
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
    private = make_private_tmp()
    preload()
    if private:
        view.enter()
    run_confined(job, Path(args.workdir), Limits.model_validate(json.loads(args.limits)), args.uid)


if __name__ == "__main__":
    main()
