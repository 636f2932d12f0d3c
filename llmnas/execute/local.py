"""The local pool of sandboxed workers (the Executor seam is in execute/base.py).

Each worker slot owns a warm zygote (sandbox/zygote.py), forked from the driver's warm template
(execute/template.py) into its own network, pid and mount namespaces where the OS allows it; every
candidate is a fresh forked child of it. The driver only ever reads JSON and .npy/.safetensors bytes
back from a candidate's folder, never executes them.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path

from llmnas.execute import stale
from llmnas.execute.base import (
    clear_outputs,
    failure_from_status,
    output_limits,
    take_file,
    verdict,
)
from llmnas.execute.template import Zygote, fork_zygote
from sandbox.cleanup import remove_tree
from sandbox.protocol import (
    Job,
    Limits,
    Result,
    Stage,
    scrubbed_env,
)

log = logging.getLogger("llmnas.execute.local")
_SAFETY_MARGIN_S = 30.0


@cache
def _namespaces() -> tuple[tuple[str, ...], bool]:
    """The ``unshare`` prefix that works here (network + pid + mount namespaces), and whether the
    world-writable folders can be masked inside it."""
    unshare = shutil.which("unshare")
    if not unshare:
        log.warning("unshare not found: no network namespace; the audit hook alone refuses sockets")
        return (), False
    base = [unshare, "--net", "--pid", "--fork", "--mount-proc", "--kill-child"]
    full = [
        *base,
        "--ipc",
        "--uts",
    ]  # where allowed; each candidate unshares its own IPC too (sandbox/cell.py)
    for prefix in (full, base, *([unshare, "--map-root-user", *p[1:]] for p in (full, base))):
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


def offline_prefix() -> list[str]:
    """The command prefix that starts a trusted helper (the warm template, the ONNX checker) in an empty
    network namespace of its own where the host allows it: onnxruntime, which they import, sends
    telemetry for as long as it is loaded."""
    prefix = isolation_prefix()
    return [o for i, o in enumerate(prefix) if i == 0 or o in ("--map-root-user", "--net")]


def isolation_env(root: Path) -> dict[str, str]:
    """What tells a worker started under that prefix to mount its private /tmp (sandbox/mounts.py)."""
    return {"LLMNAS_PRIVATE_TMP": "1", "LLMNAS_POOL_ROOT": str(root)} if _namespaces()[1] else {}


def _devices(gpus: int | Sequence[str]) -> list[str]:
    """Device ids for the slots: given ones, or the first ``gpus`` of those visible to the driver."""
    if not isinstance(gpus, int):
        return [str(g) for g in gpus]
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return (visible or [str(d) for d in range(gpus)])[:gpus]


def default_workers(workers: int | None) -> int:
    """Worker slots on this machine: ``workers``, or one per core."""
    return workers or os.cpu_count() or 1


class _Slot:
    """One worker slot: a uid, a device, and (in zygote mode) one warm zygote."""

    def __init__(self, root: Path, uid: int | None, env: dict[str, str], zygote: bool):
        self.root, self.uid, self.env, self.zygote = root, uid, env, zygote
        self.proc: Zygote | None = None

    def start(self) -> None:
        self.proc = fork_zygote(self.env, Path(self.env["HOME"]), isolation_prefix()[1:], offline_prefix())
        ready = self.proc.stdout.readline()
        if not ready.startswith('{"ready"'):
            self.stop()
            raise RuntimeError(f"sandbox zygote failed to start: {ready.strip() or 'it exited'}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
        self.proc = None

    def run(self, job_file: Path, workdir: Path, limits: Limits) -> dict:
        return (
            self._run_zygote(job_file, workdir, limits)
            if self.zygote
            else self._run_fresh(job_file, workdir, limits)
        )

    def _run_zygote(self, job_file: Path, workdir: Path, limits: Limits) -> dict:
        if self.proc is None or not self.proc.running():
            self.stop()
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
        start = time.perf_counter()  # the supervisor's clock: energy is charged on it, never the worker's
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
        wall = time.perf_counter() - start
        if code < 0:
            return {"status": "signaled", "code": -1, "signal": -code, "wall": wall}
        return {"status": "exited", "code": code, "signal": 0, "wall": wall}


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
        """``gpus``: a count (slot i gets device i mod count) or the device ids to spread slots over;
        with any, candidates train on cuda."""
        if mode not in ("zygote", "fresh"):
            raise ValueError(f"unknown executor mode {mode!r}: use 'zygote' or 'fresh'")
        self.workers = default_workers(workers)
        self.limits = limits or Limits()
        for swept in stale.sweep_stale():
            log.warning("removed the sandbox folder %s left by a driver that died", swept)
        self.root = Path(tempfile.mkdtemp(prefix=stale.PREFIX))
        self.root.chmod(0o711)
        self.data_dir = self.root / "data"
        self._uids, self._uid_block = stale.reserve_uids(self.workers)
        self._owner = stale.claim(self.root, self._uids)
        self._slots: queue.Queue[_Slot] = queue.Queue()
        self._all: list[_Slot] = []
        devices = _devices(gpus)
        self.device = "cuda" if devices else "cpu"
        for i in range(self.workers):
            home = self.root / f"slot{i}"
            home.mkdir(mode=0o711)
            env = scrubbed_env(1, str(home))
            env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
            env["LLMNAS_PRELOAD"] = ",".join(preload)
            env.update(isolation_env(self.root))
            if devices:
                env["CUDA_VISIBLE_DEVICES"] = devices[i % len(devices)]
            self._all.append(_Slot(self.root, self._uids[i] if self._uids else None, env, mode == "zygote"))
            self._slots.put(self._all[-1])
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="llmnas-worker")
        self._counter = 0
        self._lock = threading.Lock()
        self._closing = False

    def capacity(self) -> int:
        return self.workers

    def submit(self, job: Job, out_dir: Path) -> Future[Result]:
        return self._pool.submit(self._run, job, Path(out_dir))

    def _run(self, job: Job, out_dir: Path) -> Result:
        slot = self._slots.get()
        try:
            return self._evaluate(slot, job, out_dir)
        except Exception as exc:  # noqa: BLE001 - the pool must survive anything
            if not self._closing:  # a zygote killed by close() is no failure worth a word
                log.warning("sandbox failure for %s: %s", job.candidate_id, exc)
                log.debug("sandbox failure for %s", job.candidate_id, exc_info=True)
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
            return verdict(
                job, out_dir, lambda: failure_from_status(job, reply, self.limits), wall=reply["wall"]
            )
        finally:
            remove_tree(workdir)
            job_file.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop at once: queued jobs are cancelled, candidates in flight are killed with their zygotes."""
        self._closing = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        for slot in self._all:
            slot.stop()
        self._pool.shutdown(wait=True)
        for slot in self._all:
            slot.stop()
        if not remove_tree(self.root):
            log.warning("could not remove the sandbox folder %s", self.root)
        stale.release(self._owner)
        stale.release_uids(self._uids, self._uid_block)

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
