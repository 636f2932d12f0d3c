"""The Executor seam, and how any executor turns what a worker left in a folder into a Result.

The driver only ever reads JSON and .npy/.safetensors bytes back from a candidate's folder, never
executes them; every value is validated by sandbox/protocol.py before use.
"""

from __future__ import annotations

import hashlib
import os
import signal
import stat
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from sandbox.protocol import (
    ARTEFACT_BYTES,
    MAX_RESULT_BYTES,
    ONNX_FILE,
    PRED_FILES,
    RESULT_FILE,
    STDOUT_FILE,
    WEIGHTS_FILE,
    Job,
    Limits,
    Result,
    Stage,
    invalid_fields,
)

_SIGNALS = {
    signal.SIGXCPU: (Stage.timeout, "CPU time limit exceeded"),
    signal.SIGXFSZ: (Stage.crash, "file size limit exceeded (flooding output or writing large files?)"),
    signal.SIGSEGV: (Stage.crash, "the interpreter crashed (SIGSEGV)"),
    signal.SIGABRT: (Stage.crash, "the process aborted (SIGABRT)"),
    signal.SIGKILL: (Stage.memory, "killed (SIGKILL), most likely for memory"),
}


class Executor(Protocol):
    """Runs jobs somewhere safe; artefacts land in ``out_dir``; the future never raises.

    ``data_dir`` is where the run writes the worker's .npy files before the first submit; ``device``
    (cpu or cuda) is where its workers train candidates.
    """

    data_dir: Path
    device: str

    def capacity(self) -> int:
        """Candidates it can evaluate at once now (at least 1): the size of a search round."""
        ...

    def submit(self, job: Job, out_dir: Path) -> Future[Result]: ...

    def close(self) -> None: ...


def take_file(src: Path, dst: Path, max_bytes: int) -> bool:
    """Copy a regular file a worker wrote, refusing links, devices and oversized files."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return False
        dst.write_bytes(f.read(max_bytes + 1)[:max_bytes])
    return True


def output_limits(limits: Limits) -> dict[str, int]:
    """The files a worker may hand back for a candidate, with the most bytes each may hold."""
    return {
        RESULT_FILE: MAX_RESULT_BYTES,
        **dict.fromkeys((*PRED_FILES.values(), WEIGHTS_FILE, ONNX_FILE), ARTEFACT_BYTES),
        STDOUT_FILE: max(limits.stdout_bytes, 1),
    }


def clear_outputs(out_dir: Path) -> None:
    """Remove what an earlier job left (a pre-screen's result), so a silent worker is never misread."""
    for name in output_limits(Limits()):
        (out_dir / name).unlink(missing_ok=True)


def crash_result(job: Job, message: str, **fields) -> Result:
    """A crash-stage failure decided by the executor."""
    return Result(candidate_id=job.candidate_id, ok=False, stage=Stage.crash, message=message, **fields)


def verdict(job: Job, out_dir: Path, missing: Callable[[], Result], wall: float | None = None) -> Result:
    """Check a worker's report against the files it left in ``out_dir``, and write the final result.json.

    ``missing`` explains a worker that left no report (how its process ended); ``wall``, the seconds the
    supervisor outside the cell measured, replaces the worker's own figure (candidate code ran beside it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULT_FILE
    if path.is_file():
        try:
            result = Result.model_validate_json(path.read_bytes()[:MAX_RESULT_BYTES])
        except ValidationError as exc:  # a forged or broken report: out-of-range, non-finite values
            result = crash_result(job, f"the worker wrote an invalid result: {invalid_fields(exc)[:400]}")
        except ValueError as exc:
            result = crash_result(job, f"the worker wrote an invalid result: {str(exc)[:200]}")
        if result.candidate_id != job.candidate_id:
            result = crash_result(job, "the worker reported another candidate's id")
    else:
        result = missing()
    if result.ok and not job.screen_only:
        result = _artifact_checked(job, out_dir, result)
    result = result.model_copy(update={"node": None, "retries": 0})  # the executor's to say, not the worker's
    if wall is not None:
        result = result.model_copy(update={"wall_seconds": wall})
    path.write_text(result.model_dump_json(indent=1))
    return result


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _artifact_checked(job: Job, out_dir: Path, result: Result) -> Result:
    """A passing result whose files are all there and are the ones its worker sealed when training ended:
    the artifact's size (model_bytes) is then read here, from the file itself."""
    lost = next(
        (n for n in (*PRED_FILES.values(), WEIGHTS_FILE, ONNX_FILE) if not (out_dir / n).is_file()), None
    )
    if lost:
        return crash_result(job, f"the worker did not leave a valid {lost}")
    if result.metrics is None:
        return crash_result(job, "the worker reported a success without measurements")
    sealed = {ONNX_FILE: result.artifact_sha256, WEIGHTS_FILE: result.weights_sha256}
    changed = [name for name, digest in sealed.items() if digest is None or _sha256(out_dir / name) != digest]
    if changed:
        return crash_result(job, f"{', '.join(changed)} is not the file sealed when training ended")
    size = (out_dir / ONNX_FILE).stat().st_size
    return result.model_copy(update={"metrics": result.metrics.model_copy(update={"model_bytes": size})})


def failure_from_status(job: Job, reply: dict, limits: Limits) -> Result:
    """A result for a child that left no result.json, from how it ended."""
    if reply["status"] == "timeout":
        stage, msg = Stage.timeout, f"exceeded the {limits.timeout_s:g} s time limit and was killed"
    elif reply["status"] == "signaled":
        stage, msg = _SIGNALS.get(reply["signal"], (Stage.crash, f"killed by signal {reply['signal']}"))
    elif reply["status"] == "lost":
        stage, msg = Stage.crash, "the worker process died while evaluating this candidate"
    else:
        stage, msg = Stage.crash, f"the process exited with status {reply['code']} before reporting a result"
    return Result(
        candidate_id=job.candidate_id, ok=False, stage=stage, message=msg, wall_seconds=reply["wall"]
    )
