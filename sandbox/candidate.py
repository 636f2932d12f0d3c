"""Running a candidate's code: build its model, check its output, turn anything it raises into a
failure with a stage. Used by the training process (sandbox/worker.py), the only one that runs it."""

from __future__ import annotations

import linecache
import traceback

import torch

from sandbox.protocol import Job, Stage

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


def stage_of(exc: BaseException, default: Stage) -> Stage:
    if isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in _OOM_MARKERS):
        return Stage.memory
    return default


def guard(stage: Stage, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with anything it raises turned into a CandidateFailure at ``stage``."""
    try:
        return fn(*args, **kwargs)
    except CandidateFailure:
        raise
    except BaseException as exc:  # noqa: BLE001 - candidate code may raise anything, SystemExit included
        raise CandidateFailure(stage_of(exc, stage), describe(exc)) from None


def build(job: Job) -> torch.nn.Module:
    """Execute the candidate's module and call its ``build_model`` (or ``Model``)."""
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


def check_shape(model: torch.nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """One forward pass in eval mode must give a (batch, num_classes) tensor of logits."""
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - say what went in, for the repair prompt
        msg = f"forward on input {tuple(x.shape)} failed: {describe(exc)}"
        raise CandidateFailure(stage_of(exc, Stage.shape), msg) from None
    if not isinstance(out, torch.Tensor):
        raise CandidateFailure(
            Stage.shape, f"forward returned {type(out).__name__}, expected a Tensor of logits"
        )
    want = (x.shape[0], num_classes)
    if tuple(out.shape) != want:
        raise CandidateFailure(
            Stage.shape, f"forward on input {tuple(x.shape)} gave shape {tuple(out.shape)}, expected {want}"
        )
