"""The Executor seam and the local pool of sandboxed workers.

Each worker slot owns a warm zygote (``python -m sandbox.zygote``) started inside a network and pid
namespace where the OS allows it; every candidate is a fresh forked child of it. The driver only ever
reads JSON and .npy/.safetensors bytes back from a candidate's folder, never executes them.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import queue
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from sandbox.protocol import (
    ARTEFACT_BYTES,
    MAX_RESULT_BYTES,
    PRED_FILES,
    RESULT_FILE,
    STDOUT_FILE,
    TORCHSCRIPT_FILE,
    WEIGHTS_FILE,
    Job,
    Limits,
    Result,
    Stage,
    invalid_fields,
    scrubbed_env,
)

log = logging.getLogger("llmnas.executor")
_SIGNALS = {
    signal.SIGXCPU: (Stage.timeout, "CPU time limit exceeded"),
    signal.SIGXFSZ: (Stage.crash, "file size limit exceeded (flooding output or writing large files?)"),
    signal.SIGSEGV: (Stage.crash, "the interpreter crashed (SIGSEGV)"),
    signal.SIGABRT: (Stage.crash, "the process aborted (SIGABRT)"),
    signal.SIGKILL: (Stage.memory, "killed (SIGKILL), most likely for memory"),
}
_SAFETY_MARGIN_S = 30.0


class Executor(Protocol):
    """Runs jobs somewhere safe; artefacts land in ``out_dir``; the future never raises.

    ``data_dir`` is where the run writes the worker's .npy files before the first submit.
    """

    data_dir: Path

    def submit(self, job: Job, out_dir: Path) -> Future[Result]: ...

    def close(self) -> None: ...


@cache
def _namespaces() -> tuple[tuple[str, ...], bool]:
    """The ``unshare`` prefix that works here (network + pid + mount namespaces), and whether the
    world-writable folders can be masked inside it."""
    unshare = shutil.which("unshare")
    if not unshare:
        log.warning("unshare not found: no network namespace; the audit hook alone refuses sockets")
        return (), False
    base = [unshare, "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
    for prefix in (base, [unshare, "--map-root-user", *base[1:]]):
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            probe = [*prefix, "mount", "-t", "tmpfs", "llmnas-probe", "/tmp"]
            masked = subprocess.run(probe, capture_output=True).returncode == 0
            if not masked:
                log.warning("cannot mount a private /tmp for candidates: they may leave files in /tmp")
            return tuple(prefix), masked
    log.warning("no network namespace available: candidates rely on the audit hook to refuse sockets")
    return (), False


def isolation_prefix() -> list[str]:
    """The command prefix that starts a worker process in its own namespaces (or nothing)."""
    return list(_namespaces()[0])


def isolation_env(root: Path) -> dict[str, str]:
    """What tells a worker started under that prefix to mount its private /tmp (sandbox/mounts.py)."""
    return {"LLMNAS_PRIVATE_TMP": "1", "LLMNAS_POOL_ROOT": str(root)} if _namespaces()[1] else {}


def _devices(gpus: int | Sequence[str]) -> list[str]:
    """Device ids for the slots: given ones, or the first ``gpus`` of those visible to the driver."""
    if not isinstance(gpus, int):
        return [str(g) for g in gpus]
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(d) for d in range(gpus)])[:gpus]


_POOLS = itertools.count()


def _uid_base() -> int | None:
    """Unprivileged uids of our own, one per slot (up to 256), distinct per pool and per driver
    process, when running as root; None otherwise."""
    if os.geteuid() != 0:
        return None
    return 1_000_000 + ((os.getpid() % 100_000) * 64 + next(_POOLS) % 64) * 256


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
        **dict.fromkeys((*PRED_FILES.values(), WEIGHTS_FILE, TORCHSCRIPT_FILE), ARTEFACT_BYTES),
        STDOUT_FILE: max(limits.stdout_bytes, 1),
    }


def clear_outputs(out_dir: Path) -> None:
    """Remove what an earlier job left (a pre-screen's result), so a silent worker is never misread."""
    for name in output_limits(Limits()):
        (out_dir / name).unlink(missing_ok=True)


def crash_result(job: Job, message: str) -> Result:
    """A crash-stage failure decided by the executor."""
    return Result(candidate_id=job.candidate_id, ok=False, stage=Stage.crash, message=message)


def verdict(job: Job, out_dir: Path, missing: Callable[[], Result]) -> Result:
    """Check a worker's report against the files it left in ``out_dir``, and write the final result.json.

    ``missing`` explains a worker that left no report (how its process ended)."""
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
        lost = next((n for n in (*PRED_FILES.values(), WEIGHTS_FILE) if not (out_dir / n).is_file()), None)
        if lost:
            result = crash_result(job, f"the worker did not leave a valid {lost}")
    path.write_text(result.model_dump_json(indent=1))
    return result


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


class _Slot:
    """One worker slot: a uid, a device, and (in zygote mode) one warm zygote process."""

    def __init__(self, root: Path, uid: int | None, env: dict[str, str], zygote: bool):
        self.root, self.uid, self.env, self.zygote = root, uid, env, zygote
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [*isolation_prefix(), sys.executable, "-m", "sandbox.zygote"]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=self.env,
            cwd=self.env["HOME"],
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        ready = self.proc.stdout.readline()
        if not ready.startswith('{"ready"'):
            raise RuntimeError(
                f"sandbox zygote failed to start (got {ready!r}); run `python -m sandbox.zygote`"
            )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def run(self, job_file: Path, workdir: Path, limits: Limits) -> dict:
        return (
            self._run_zygote(job_file, workdir, limits)
            if self.zygote
            else self._run_fresh(job_file, workdir, limits)
        )

    def _run_zygote(self, job_file: Path, workdir: Path, limits: Limits) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        proc = self.proc
        req = {"job": str(job_file), "workdir": str(workdir), "limits": limits.model_dump(), "uid": self.uid}
        try:
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], limits.timeout_s + _SAFETY_MARGIN_S)
            line = proc.stdout.readline() if ready else ""
            if line:
                return json.loads(line)
        except (OSError, ValueError):
            pass
        self.stop()
        return {"status": "lost", "code": -1, "signal": 0, "wall": limits.timeout_s}

    def _run_fresh(self, job_file: Path, workdir: Path, limits: Limits) -> dict:
        cmd = [
            *isolation_prefix(),
            sys.executable,
            "-m",
            "sandbox.worker",
            str(job_file),
            str(workdir),
            "--limits",
            limits.model_dump_json(),
        ]
        if self.uid is not None:
            cmd += ["--uid", str(self.uid)]
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"status": "timeout", "code": -1, "signal": signal.SIGKILL, "wall": limits.timeout_s}
        if code < 0:
            return {"status": "signaled", "code": -1, "signal": -code, "wall": 0.0}
        return {"status": "exited", "code": code, "signal": 0, "wall": 0.0}


@dataclass
class _Work:
    job: Job
    out_dir: Path
    future: Future


class LocalPool:
    """N sandboxed worker slots on this machine (default: one per core, one thread each)."""

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        *,
        mode: str = "zygote",
        gpus: int | Sequence[str] = 0,
        preload: tuple[str, ...] = (),
    ):
        """``gpus``: a count (slot i gets device i mod count) or the device ids to spread slots over."""
        if mode not in ("zygote", "fresh"):
            raise ValueError(f"unknown executor mode {mode!r}: use 'zygote' or 'fresh'")
        self.workers = workers or os.cpu_count() or 1
        self.limits = limits or Limits()
        self.root = Path(tempfile.mkdtemp(prefix="llmnas-sandbox-"))
        self.root.chmod(0o711)
        self.data_dir = self.root / "data"
        base = _uid_base()
        self._slots: queue.Queue[_Slot] = queue.Queue()
        self._all: list[_Slot] = []
        for i in range(self.workers):
            home = self.root / f"slot{i}"
            home.mkdir(mode=0o711)
            env = scrubbed_env(1, str(home))
            env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
            env["LLMNAS_PRELOAD"] = ",".join(preload)
            env.update(isolation_env(self.root))
            devices = _devices(gpus)
            if devices:
                env["CUDA_VISIBLE_DEVICES"] = devices[i % len(devices)]
            self._all.append(_Slot(self.root, None if base is None else base + i, env, mode == "zygote"))
            self._slots.put(self._all[-1])
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="llmnas-worker")
        self._counter = 0
        self._lock = threading.Lock()

    def submit(self, job: Job, out_dir: Path) -> Future[Result]:
        return self._pool.submit(self._run, job, Path(out_dir))

    def _run(self, job: Job, out_dir: Path) -> Result:
        slot = self._slots.get()
        try:
            return self._evaluate(slot, job, out_dir)
        except Exception as exc:  # noqa: BLE001 - the pool must survive anything
            log.exception("sandbox failure for %s", job.candidate_id)
            return Result(
                candidate_id=job.candidate_id, ok=False, stage=Stage.crash, message=f"sandbox error: {exc}"
            )
        finally:
            self._slots.put(slot)

    def _evaluate(self, slot: _Slot, job: Job, out_dir: Path) -> Result:
        with self._lock:
            self._counter += 1
            tag = f"{self._counter:06d}-{job.candidate_id}"
        workdir = self.root / f"work-{tag}"
        workdir.mkdir(mode=0o700)
        job_file = self.root / f"job-{tag}.json"
        job_file.write_text(job.model_dump_json())
        job_file.chmod(0o644)
        if slot.uid is not None:
            os.chown(workdir, slot.uid, slot.uid)
        try:
            reply = slot.run(job_file, workdir, self.limits)
            out_dir.mkdir(parents=True, exist_ok=True)
            clear_outputs(out_dir)
            for name, limit in output_limits(self.limits).items():
                take_file(workdir / name, out_dir / name, limit)
            return verdict(job, out_dir, lambda: failure_from_status(job, reply, self.limits))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            job_file.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop at once: queued jobs are cancelled, candidates in flight are killed with their zygotes."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for slot in self._all:
            slot.stop()
        self._pool.shutdown(wait=True)
        for slot in self._all:
            slot.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
