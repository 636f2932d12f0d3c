"""The Executor seam on Ray: a cluster evaluates candidates while one driver searches.

Each worker slot is a Ray actor that wraps a one-slot :class:`~llmnas.executor.LocalPool` on its node,
so every candidate still runs as a forked, confined child of a warm sandbox zygote there: Ray only
moves jobs and bytes. Actors (rather than plain tasks) keep the zygote warm and the data written once
per slot; each actor holds ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs for its lifetime.

What travels:
  * the data, once: the run writes the worker files into :attr:`RayExecutor.data_dir` (a staging
    folder on the driver) before the first submit; the executor puts those arrays into the object
    store once and each actor writes them into its own pool's data folder on first use;
  * a job, as JSON, with ``data_dir`` rewritten on the node to that node's data folder;
  * the answer, as the raw bytes of the files the node's pool left (result.json, predictions,
    weights, stdout.txt). The driver re-validates result.json with pydantic and writes the files into
    ``out_dir`` itself, so the run folder on the driver stays the single source of truth. Nothing a
    candidate produced is unpickled or executed on the driver.

Fault tolerance: a worker (actor process or node) that dies mid-candidate is replaced and the
candidate is run again, up to ``retries`` times; after that the candidate is recorded as a crash with a
message that says so. No candidate is lost and the future never raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from llmnas.errors import UserError
from llmnas.execute.base import clear_outputs, crash_result, output_limits, verdict
from llmnas.execute.stale import sweep_sandbox
from sandbox.protocol import (
    DATA_FILES,
    RESULT_FILE,
    Job,
    Limits,
    Result,
)

log = logging.getLogger("llmnas.ray")

INSTALL_HINT = "Ray is an optional extra: pip install 'llmnas[ray]'"
# Beyond the candidate's own limit: actor placement and start, zygote start, data and result transfer.
_DEADLINE_MARGIN_S = 120.0
_CLOSE_WAIT_S = 5.0
_TIMES = {1: "once", 2: "twice"}


def import_ray():
    """``ray``, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(f"the Ray executor needs the `ray` package. {INSTALL_HINT}") from exc
    return ray


class _Evaluator:
    """Runs on a Ray node (wrapped by ``ray.remote`` at runtime): one warm sandbox slot."""

    def __init__(self, limits_json: str, preload: tuple[str, ...]):
        from llmnas.execute.local import LocalPool

        self.limits = Limits.model_validate_json(limits_json)
        self._gpu_ids = self._assigned_gpus()
        self.pool = LocalPool(
            1, self.limits, preload=preload, gpus=[",".join(self._gpu_ids)] if self._gpu_ids else 0
        )
        self._data_ready = False
        self._outputs = output_limits(self.limits)

    @staticmethod
    def _assigned_gpus() -> list[str]:
        """The GPUs Ray assigned to this actor: the sandbox's scrubbed environment gets exactly these."""
        import ray

        return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]

    def info(self) -> dict:
        import ray

        from llmnas import __version__

        return {
            "pid": os.getpid(),
            "node": ray.util.get_node_ip_address(),
            "root": str(self.pool.root),
            "gpus": self._gpu_ids,
            "llmnas": __version__,
        }

    def sweep(self, node: str, root: str) -> bool:
        """Clean up after a dead actor that ran on this node: kill what still runs in its sandbox
        folder (its zygote and candidate outlive it) and remove the folder."""
        import ray

        return node == ray.util.get_node_ip_address() and sweep_sandbox(Path(root))

    def _write_data(self, boxed: list) -> None:
        import numpy as np
        import ray

        arrays = ray.get(boxed[0])
        folder = self.pool.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        for name in DATA_FILES:
            path = folder / name
            np.save(path, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            path.chmod(0o644)
        self._data_ready = True

    def evaluate(self, job_json: str, boxed_data: list) -> dict[str, bytes]:
        """Evaluate one job in this node's sandbox; the bytes of what it left, by file name."""
        if not self._data_ready:
            self._write_data(boxed_data)
        job = Job.model_validate_json(job_json)
        job = job.model_copy(update={"data_dir": str(self.pool.data_dir)})
        out = Path(tempfile.mkdtemp(prefix="out-", dir=self.pool.root))
        try:
            self.pool.submit(job, out).result()
            files = {}
            for name, limit in self._outputs.items():
                path = out / name
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= limit:
                    files[name] = path.read_bytes()
            return files
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def close(self) -> None:
        self.pool.close()


class _Seat:
    """One worker slot on the driver's side: the actor that fills it now and its ``info()`` reply."""

    def __init__(self, index: int):
        self.index = index
        self.actor: Any = None
        self.info_ref: Any = None


class RayExecutor:
    """``workers`` sandboxed slots on a Ray cluster, behind the same interface as LocalPool.

    ``address`` is passed to ``ray.init`` when Ray is not initialised yet (None starts a local
    instance; "auto" or "HOST:6379" joins a cluster); an already initialised Ray is used as it is.
    ``workers=None`` takes as many slots as the cluster has room for; more than that is capped, since
    actors that cannot be placed would hold their candidates until the deadline.
    """

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        *,
        address: str | None = None,
        gpus_per_task: float = 0,
        cpus_per_task: float = 1,
        retries: int = 1,
        preload: tuple[str, ...] = (),
        init_kwargs: dict | None = None,
    ):
        if gpus_per_task < 0 or cpus_per_task <= 0 or retries < 0:
            raise ValueError("gpus_per_task >= 0, cpus_per_task > 0 and retries >= 0 are required")
        ray = import_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            ray.init(address=address, **(init_kwargs or {}))
            self._owns_ray = True
        self.limits = limits or Limits()
        self.retries = retries
        self.restarts = 0
        try:
            self.workers = self._capacity(workers, cpus_per_task, gpus_per_task)
        except BaseException:
            if self._owns_ray:
                ray.shutdown()
            raise
        self._deadline_s = self.limits.timeout_s + _DEADLINE_MARGIN_S
        self.root = Path(tempfile.mkdtemp(prefix="llmnas-ray-"))
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(mode=0o755)
        # Two threads per actor: info() and close() answer while a candidate runs. Ray neither restarts
        # actors nor retries calls itself: the executor replaces a dead actor and retries the candidate.
        options: dict[str, Any] = {
            "num_cpus": cpus_per_task,
            "max_concurrency": 2,
            "max_restarts": 0,
            "max_task_retries": 0,
        }
        if gpus_per_task:
            options["num_gpus"] = gpus_per_task
        self._actor_class = ray.remote(**options)(_Evaluator)
        self._limits_json = self.limits.model_dump_json()
        self._preload = tuple(preload)
        self._lock = threading.Lock()
        self._closed = False
        self._data_box: list | None = None
        self._seats = [_Seat(i) for i in range(self.workers)]
        self._idle: queue.Queue[_Seat] = queue.Queue()
        for seat in self._seats:
            self._start(seat)
            self._idle.put(seat)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="llmnas-ray")

    def _capacity(self, workers: int | None, cpus: float, gpus: float) -> int:
        total = self._ray.cluster_resources()
        room = int(total.get("CPU", 0) // cpus)
        if gpus:
            room = min(room, int(total.get("GPU", 0) // gpus))
        if room < 1:
            have = f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs"
            raise ValueError(
                f"the Ray cluster has {have}: not enough for one worker with {cpus:g} CPUs and "
                f"{gpus:g} GPUs (add nodes, or lower --gpus-per-task)"
            )
        if workers is None:
            return room
        if workers > room:
            log.warning("the Ray cluster has room for %d workers, not %d: using %d", room, workers, room)
        return min(workers, room)

    def _start(self, seat: _Seat) -> None:
        seat.actor = self._actor_class.remote(self._limits_json, self._preload)
        seat.info_ref = seat.actor.info.remote()

    def _replace(self, seat: _Seat) -> None:
        """A new actor for ``seat``; it cleans up after the old one if they share a node."""
        dead = None
        with contextlib.suppress(Exception):
            dead = self._ray.get(seat.info_ref, timeout=0)
        with self._lock:
            with contextlib.suppress(Exception):
                self._ray.kill(seat.actor, no_restart=True)
            if not self._closed:
                self._start(seat)
                if dead:
                    seat.actor.sweep.remote(dead["node"], dead["root"])

    def workers_info(self, timeout_s: float = 60.0) -> list[dict]:
        """Where each slot runs now: node address, actor pid, assigned GPUs, llmnas version."""
        return self._ray.get([seat.info_ref for seat in self._seats], timeout=timeout_s)

    # -- the Executor interface ------------------------------------------------------------------

    def submit(self, job: Job, out_dir: Path) -> Future[Result]:
        try:
            return self._pool.submit(self._run, job, Path(out_dir))
        except RuntimeError:  # submitted after close(): answer, don't raise
            future: Future[Result] = Future()
            future.set_result(crash_result(job, "the Ray executor was closed before this candidate ran"))
            return future

    def _run(self, job: Job, out_dir: Path) -> Result:
        seat = self._idle.get()
        try:
            result = self._evaluate(seat, job, out_dir)
        except Exception as exc:  # noqa: BLE001 - the executor must survive anything
            log.exception("ray executor failure for %s", job.candidate_id)
            result = crash_result(job, f"ray executor error: {str(exc)[:300]}")
        finally:
            self._idle.put(seat)
        try:  # the driver's record of this candidate, whatever happened: written last
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / RESULT_FILE).write_text(result.model_dump_json(indent=1))
        except OSError:
            log.exception("could not write the result of %s into %s", job.candidate_id, out_dir)
        return result

    def _data(self) -> list:
        """The staged data in the object store, boxed so Ray does not resolve it on every call."""
        with self._lock:
            if self._data_box is None:
                import numpy as np

                arrays = {}
                for name in DATA_FILES:
                    path = self.data_dir / name
                    if not path.is_file():
                        raise FileNotFoundError(
                            f"write the worker data into {self.data_dir} before submitting"
                        )
                    arrays[name] = np.load(path, allow_pickle=False)
                self._data_box = [self._ray.put(arrays)]
            return self._data_box

    def _evaluate(self, seat: _Seat, job: Job, out_dir: Path) -> Result:
        ray = self._ray
        box, job_json = self._data(), job.model_dump_json()
        deaths: list[str] = []
        while True:
            if self._closed:
                return crash_result(
                    job, "the Ray executor was closed while this candidate was queued or running"
                )
            try:
                ref = seat.actor.evaluate.remote(job_json, box)
                files = ray.get(ref, timeout=self._deadline_s)
            except ray.exceptions.RayTaskError as exc:  # our code raised on the node: not a lost worker
                return crash_result(job, f"ray worker error: {_first_line(exc.cause or exc)}")
            except ray.exceptions.RayError as exc:  # the actor, its node or the reply is gone
                if self._closed:
                    return crash_result(job, "the Ray executor was closed while this candidate was running")
                deaths.append(_first_line(exc))
                with self._lock:
                    self.restarts += 1
                log.warning(
                    "ray worker %d died while evaluating %s (%s); %s",
                    seat.index,
                    job.candidate_id,
                    deaths[-1],
                    "retrying on a new worker" if len(deaths) <= self.retries else "giving up",
                )
                self._replace(seat)
                if len(deaths) > self.retries:
                    times = _TIMES.get(len(deaths), f"{len(deaths)} times")
                    return crash_result(
                        job,
                        f"ray worker died {times} while evaluating this candidate "
                        f"(not retried again; last: {deaths[-1]})",
                    )
                continue
            return self._land(job, files, out_dir)

    def _land(self, job: Job, files: Any, out_dir: Path) -> Result:
        """Write what a node sent back into ``out_dir`` (within the size limits), then judge it like a
        local worker's files."""
        if not isinstance(files, dict) or not isinstance(files.get(RESULT_FILE), bytes):
            return crash_result(job, "the ray worker sent back no result")
        out_dir.mkdir(parents=True, exist_ok=True)
        clear_outputs(out_dir)
        for name, limit in output_limits(self.limits).items():
            data = files.get(name)
            if isinstance(data, bytes) and len(data) <= limit:
                (out_dir / name).write_bytes(data)
        return verdict(job, out_dir, lambda: crash_result(job, "the ray worker sent back no result"))

    def close(self) -> None:
        """Stop at once: queued jobs are cancelled, candidates in flight are killed with their actors."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Ask each actor to stop its sandbox (kills the candidate and removes its files on the node),
        # then kill the actors whatever they answered.
        closing = []
        for seat in self._seats:
            with contextlib.suppress(Exception):
                closing.append(seat.actor.close.remote())
        with contextlib.suppress(Exception):
            self._ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_WAIT_S)
        with self._lock:
            for seat in self._seats:
                with contextlib.suppress(Exception):
                    self._ray.kill(seat.actor, no_restart=True)
        self._pool.shutdown(wait=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._owns_ray:
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
