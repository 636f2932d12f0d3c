"""The Executor seam on Ray: a cluster evaluates candidates while one driver searches.

Each worker slot is a Ray actor (:class:`~llmnas.execute.ray_node.NodeSlot`) that wraps a one-slot
:class:`~llmnas.execute.local.LocalPool` on its node, so every candidate still runs as a forked, confined child of a warm sandbox zygote there: Ray only
moves jobs and bytes. Actors (rather than plain tasks) keep the zygote warm and the data written once
per slot; each actor holds ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs for its lifetime. The
slots follow the cluster: at the start of each round the search asks :meth:`RayExecutor.capacity`,
which counts what Ray reports now and starts actors on nodes that joined.

What travels:
  * the data, once: the run writes the worker files into :attr:`RayExecutor.data_dir` (a staging
    folder on the driver) before the first submit; the executor puts those arrays into the object
    store once and each actor writes them into its own pool's data folder on first use;
  * a job, as JSON, with ``data_dir`` rewritten on the node to that node's data folder;
  * the answer, as the raw bytes of the files the node's pool left (result.json, predictions,
    weights, stdout.txt). The driver re-validates result.json with pydantic and writes the files into
    ``out_dir`` itself, so the run folder on the driver stays the single source of truth. Nothing a
    candidate produced is unpickled or executed on the driver.

Fault tolerance: a worker (actor process or node) that dies mid-candidate is retired (replaced while
the cluster has room for it) and the candidate runs again on the next free worker, wherever it is, up
to ``retries`` times; after that the candidate is recorded as a crash with a message that says so. The
result names the node that answered and how many workers were lost on the way. No candidate is lost
and the future never raises.

Over 400 lines as one cohesive thing: following the cluster, handing seats to candidates, losing a worker
and retrying its candidate all change one set of seats under one lock; reading them together is how to
check that no candidate is lost or run twice at once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from llmnas.config import resolve_device
from llmnas.errors import UserError
from llmnas.execute.base import clear_outputs, crash_result, output_limits, verdict
from llmnas.execute.ray_node import NodeSlot
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
_POLL_S = 0.5  # how often a queued candidate looks again for a free worker (or a closed executor)
_TIMES = {1: "once", 2: "twice"}


def import_ray():
    """``ray``, or an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(f"the Ray executor needs the `ray` package. {INSTALL_HINT}") from exc
    return ray


class _Seat:
    """One worker slot on the driver's side: its actor, and where the actor runs (``info``, None until
    Ray placed it and it answered). ``retired`` seats get no more work; ``busy`` ones hold a candidate."""

    def __init__(self, actor: Any):
        self.actor = actor
        self.info_ref = actor.info.remote()
        self.info: dict | None = None
        self.busy = False
        self.retired = False


class RayExecutor:
    """Sandboxed worker slots on a Ray cluster, behind the same interface as LocalPool.

    ``address`` is passed to ``ray.init`` when Ray is not initialised yet (None starts a local
    instance; "auto" or "HOST:6379" joins a cluster); an already initialised Ray is used as it is.
    The slots follow the cluster: :meth:`capacity` (asked at the start of every round) counts what the
    cluster's CPUs and GPUs have room for as Ray reports them now, capped by ``workers`` when given, and
    starts or retires actors to match. ``device``: cpu, cuda or auto (cuda when the cluster has GPUs);
    ``gpus_per_task`` defaults to 1 on cuda, else 0.
    """

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        *,
        address: str | None = None,
        device: str = "cpu",
        gpus_per_task: float | None = None,
        cpus_per_task: float = 1,
        retries: int = 1,
        preload: tuple[str, ...] = (),
        init_kwargs: dict | None = None,
    ):
        if (gpus_per_task or 0) < 0 or cpus_per_task <= 0 or retries < 0 or (workers or 1) < 1:
            raise ValueError(
                "workers >= 1, gpus_per_task >= 0, cpus_per_task > 0 and retries >= 0 are required"
            )
        ray = import_ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            ray.init(address=address, **(init_kwargs or {}))
            self._owns_ray = True
        try:
            gpus_here = ray.cluster_resources().get("GPU", 0)
            self.device = resolve_device(device, gpus_here > 0, where="in the Ray cluster")
            gpus = gpus_per_task if gpus_per_task is not None else (1 if self.device == "cuda" else 0)
            self._cap, self._cpus, self._gpus = workers, cpus_per_task, gpus
            room = self._room()
            if workers is not None and room < workers:
                log.warning("the Ray cluster has room for %d workers, not %d: using %d", room, workers, room)
            if room < 1:
                raise ValueError(
                    f"the Ray cluster has {self._resources()}: not enough for one worker with "
                    f"{cpus_per_task:g} CPUs and {gpus:g} GPUs (add nodes, or lower --gpus-per-task)"
                )
        except BaseException:
            if self._owns_ray:
                ray.shutdown()
            raise
        self.limits = limits or Limits()
        self.retries = retries
        self.restarts = 0
        # How long one call may take before its worker counts as lost.
        self.deadline_s = self.limits.timeout_s + _DEADLINE_MARGIN_S
        self.root = Path(tempfile.mkdtemp(prefix="llmnas-ray-"))
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(mode=0o755)
        # Two threads per actor: info(), sweep() and close() answer while a candidate runs. Ray neither
        # restarts actors nor retries calls itself: the executor replaces dead actors and retries.
        options: dict[str, Any] = {
            "num_cpus": cpus_per_task,
            "max_concurrency": 2,
            "max_restarts": 0,
            "max_task_retries": 0,
        }
        if gpus:
            options["num_gpus"] = gpus
        self._actor_class = ray.remote(**options)(NodeSlot)
        self._limits_json = self.limits.model_dump_json()
        self._preload = tuple(preload)
        self._lock = threading.Lock()
        self._closed = False
        self._data_box: list | None = None
        self._seats: list[_Seat] = []
        self._dead: list[dict] = []  # where dead actors ran: each new actor cleans up after those on its node
        self._idle: queue.Queue[_Seat] = queue.Queue()
        self._threads: set[threading.Thread] = set()
        self.workers = 0
        self.capacity()

    # -- following the cluster -------------------------------------------------------------------

    def _resources(self) -> str:
        total = self._ray.cluster_resources()
        return f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs"

    def _room(self) -> int:
        """Workers the cluster's CPUs and GPUs have room for now, capped by ``workers``."""
        total = self._ray.cluster_resources()
        room = int(total.get("CPU", 0) // self._cpus)
        if self._gpus:
            room = min(room, int(total.get("GPU", 0) // self._gpus))
        return room if self._cap is None else min(room, self._cap)

    def capacity(self) -> int:
        """Candidates the cluster can evaluate at once now, as Ray reports its CPUs and GPUs (at least
        1, so a round always has a proposal). Starts actors for room that appeared (a node joined) and
        retires the surplus, actors that were never placed first (a node left)."""
        room = self._room()
        with self._lock:
            if self._closed:
                return max(self.workers, 1)
            live = [s for s in self._seats if not s.retired]
            live.sort(key=lambda s: (s.info is not None, s.busy))  # unplaced, then idle, then busy
            for seat in live[: max(len(live) - room, 0)]:
                self._retire(seat)
            for _ in range(room - len(live)):
                self._seats.append(self._start())
            was, self.workers = self.workers, room
        if room < 1 <= was:  # once, when the room runs out: queued candidates wait for a node
            log.warning("the Ray cluster has %s: no room for a worker now", self._resources())
        return max(room, 1)

    def _start(self) -> _Seat:
        seat = _Seat(self._actor_class.remote(self._limits_json, self._preload))
        # Ray runs the callback on a thread of its own, where calling Ray again can deadlock.
        seat.info_ref.future().add_done_callback(
            lambda answer: threading.Thread(target=self._placed, args=(seat, answer), daemon=True).start()
        )
        return seat

    def _placed(self, seat: _Seat, answer: Future) -> None:
        """Ray placed ``seat``'s actor and it answered (or died first): it cleans up after dead actors
        on its node, then takes work."""
        try:
            info = answer.result()
        except Exception:  # noqa: BLE001 - died before answering: the next capacity() replaces it
            with self._lock:
                self._retire(seat)
            return
        with self._lock:
            seat.info = info
            if seat.retired or self._closed:
                return
            for dead in self._dead:
                seat.actor.sweep.remote(dead["node"], dead["root"])
        self._idle.put(seat)

    def _retire(self, seat: _Seat) -> None:
        """No more work for ``seat``; its actor is killed now unless it holds a candidate (then when it
        gives it back). Call with the lock held."""
        seat.retired = True
        if seat in self._seats:
            self._seats.remove(seat)
        if not seat.busy:
            with contextlib.suppress(Exception):
                self._ray.kill(seat.actor, no_restart=True)

    def _lost(self, seat: _Seat) -> None:
        """``seat``'s actor or its node died: kill what is left of it, have the actors on its node clean
        up after it, and replace it if the cluster still has room."""
        with self._lock:
            seat.busy = False
            self._retire(seat)
            if seat.info:
                self._dead.append(seat.info)
                for other in self._seats:
                    if other.info:
                        other.actor.sweep.remote(seat.info["node"], seat.info["root"])
        self.capacity()

    def _acquire(self) -> _Seat | None:
        """An idle placed seat; None when the executor closes or no actor was placed for the deadline."""
        unplaced_s = 0.0
        while not self._closed:
            try:
                seat = self._idle.get(timeout=_POLL_S)
            except queue.Empty:
                with self._lock:
                    placed = any(s.info for s in self._seats)
                unplaced_s = 0.0 if placed else unplaced_s + _POLL_S
                if unplaced_s >= self.deadline_s:
                    return None
                if not placed:
                    self.capacity()  # a node may have joined since
                continue
            with self._lock:
                if seat.retired:
                    continue
                seat.busy = True
            return seat
        return None

    def _release(self, seat: _Seat) -> None:
        with self._lock:
            seat.busy = False
            if seat.retired:  # retired while it worked
                self._retire(seat)
                return
        self._idle.put(seat)

    def workers_info(self) -> list[dict]:
        """Where each placed slot runs now: node id and address, actor pid, assigned GPUs, llmnas
        version, sandbox folder."""
        with self._lock:
            return [dict(s.info) for s in self._seats if s.info]

    # -- the Executor interface ------------------------------------------------------------------

    def submit(self, job: Job, out_dir: Path) -> Future[Result]:
        future: Future[Result] = Future()
        with self._lock:
            if self._closed:  # submitted after close(): answer, don't raise
                future.set_result(crash_result(job, "the Ray executor was closed before this candidate ran"))
                return future
            thread = threading.Thread(
                target=self._settle, args=(future, job, Path(out_dir)), name="llmnas-ray", daemon=True
            )
            self._threads.add(thread)
        thread.start()
        return future

    def _settle(self, future: Future[Result], job: Job, out_dir: Path) -> None:
        try:
            if future.set_running_or_notify_cancel():
                future.set_result(self._run(job, out_dir))
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _run(self, job: Job, out_dir: Path) -> Result:
        try:
            result = self._evaluate(job, out_dir)
        except Exception as exc:  # noqa: BLE001 - the executor must survive anything
            log.exception("ray executor failure for %s", job.candidate_id)
            result = crash_result(job, f"ray executor error: {str(exc)[:300]}")
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

    def _evaluate(self, job: Job, out_dir: Path) -> Result:
        """Run ``job`` on the next idle worker; on another one if its worker dies (``retries`` times).
        The result names the node that answered and how many workers were lost on the way."""
        ray = self._ray
        box, job_json = self._data(), job.model_dump_json()
        deaths: list[str] = []
        while True:
            seat = self._acquire()
            if seat is None:
                closed = "the Ray executor was closed while this candidate was queued or running"
                late = f"no Ray worker could be placed within {self.deadline_s:g} s ({self._resources()})"
                return crash_result(job, closed if self._closed else late, retries=len(deaths))
            try:
                ref = seat.actor.evaluate.remote(job_json, box)
                files = ray.get(ref, timeout=self.deadline_s)
            except ray.exceptions.RayTaskError as exc:  # our code raised on the node: not a lost worker
                self._release(seat)
                return crash_result(job, f"ray worker error: {_first_line(exc.cause or exc)}")
            except ray.exceptions.RayError as exc:  # the actor, its node or the reply is gone
                if self._closed:
                    return crash_result(job, "the Ray executor was closed while this candidate was running")
                deaths.append(_first_line(exc))
                with self._lock:
                    self.restarts += 1
                again = len(deaths) <= self.retries
                log.warning(
                    "ray worker on node %s died while evaluating %s (%s); %s",
                    (seat.info or {}).get("node_id", "?")[:8],
                    job.candidate_id,
                    deaths[-1],
                    "retrying on another worker" if again else "giving up",
                )
                self._lost(seat)
                if again:
                    continue
                times = _TIMES.get(len(deaths), f"{len(deaths)} times")
                return crash_result(
                    job,
                    f"ray worker died {times} while evaluating this candidate "
                    f"(not retried again; last: {deaths[-1]})",
                    retries=len(deaths) - 1,
                )
            self._release(seat)
            where = {"node": seat.info["node_id"], "retries": len(deaths)}
            return self._land(job, files, out_dir).model_copy(update=where)

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
        """Stop at once: queued jobs end as crashes, candidates in flight are killed with their actors."""
        with self._lock:
            self._closed = True
            seats = list(self._seats)
        # Ask each placed actor to stop its sandbox (kills the candidate and removes its files on the node),
        # then kill the actors whatever they answered. An actor not placed yet is not waited for: its call
        # would wait for room in the cluster (the whole wait when there is none), and until it answers
        # its first call it has run no candidate.
        closing = []
        for seat in seats:
            if seat.info is not None:
                with contextlib.suppress(Exception):
                    closing.append(seat.actor.close.remote())
        with contextlib.suppress(Exception):
            self._ray.wait(closing, num_returns=len(closing), timeout=_CLOSE_WAIT_S)
        for seat in seats:
            with contextlib.suppress(Exception):
                self._ray.kill(seat.actor, no_restart=True)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=2 * _POLL_S)
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
