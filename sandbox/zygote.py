"""A warm process that has imported torch and forks one confined child per candidate (itself forked
from the driver's warm template, sandbox/template.py).

Line protocol on stdin/stdout (JSON, one object per line):
  in:  {"job": PATH, "workdir": PATH, "limits": {...}, "uid": INT|null}
  out: {"status": "exited"|"signaled"|"timeout", "code": INT, "signal": INT, "wall": SECONDS}
The zygote never runs a torch op itself, so no thread pool exists when it forks. Once warm, it moves
into a minimal view of the file system (sandbox/view.py), where it stays. Each child gets a cell
of its own (sandbox/cell.py: cgroup, IPC/UTS/mount namespaces, tmpfs folders); while it runs, the
zygote watches all of its processes together (sandbox/watch.py): a candidate over its memory is
reported as killed by SIGKILL, one over its CPU seconds as killed by SIGXCPU, one that filled its
working folder (no room left for a result) as killed by SIGXFSZ.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from pathlib import Path

import sandbox.worker as worker
from sandbox import cgroup, view
from sandbox.cell import Cell, group_memory_mb
from sandbox.mounts import make_private_tmp
from sandbox.protocol import RESULT_FILE, Job, Limits
from sandbox.watch import POLL_S, Watch

# A limit of the candidate as a whole, reported as the signal the executor explains it with.
_OVER = {"memory": signal.SIGKILL, "cpu": signal.SIGXCPU, "disk": signal.SIGXFSZ}


def _reap(deadline_s: float = 5.0) -> None:
    """Collect every child left, waiting for the ones just killed: as pid 1 of our namespace, orphans
    are re-parented to us, and an unreaped zombie would still count against the next candidate's uid."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.001)


def _cleanup(uid: int | None) -> None:
    """Nothing a candidate started may outlive it (its process group is killed before it is reaped)."""
    if os.getpid() == 1:  # inside our own pid namespace every other process is a candidate's
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
    else:
        worker.kill_uid(uid)
    _reap()


def run_one(job: Job, workdir: Path, limits: Limits, uid: int | None, private_mounts: bool = False) -> dict:
    """Fork into a fresh cell, confine and evaluate in the child; watch it against a hard deadline and
    its limits; kill everything it started; hand its result files back."""
    start = time.perf_counter()
    cell = Cell.open(workdir, limits, uid, job.threads, private_mounts)
    try:
        pid = os.fork()
        if pid == 0:
            try:
                cell.enter()
                worker.run_confined(job, workdir, limits, uid)
            finally:
                os._exit(4)
        over = _wait(pid, uid, cell, limits, start + limits.timeout_s)
        if over is not None:
            os.kill(pid, signal.SIGKILL)
        # Its process group dies before the child is reaped: until then its pid, and so its group's id, cannot
        # be reused. Killed after, without our own pid namespace, the id could name a new process group of
        # the host: another user's command, killed by SIGKILL (the exit 137s of issue 31).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        wall = time.perf_counter() - start
        _cleanup(uid)
        if cell.group is not None:
            cell.group.kill()
            _reap()
        if over is None and not (workdir / RESULT_FILE).exists() and cell.full():
            over = "disk"  # the candidate filled its working folder: the worker had no room to report
    finally:
        cell.close()
    if over == "timeout":
        return {"status": "timeout", "code": -1, "signal": signal.SIGKILL, "wall": wall}
    if over is not None:
        return {"status": "signaled", "code": -1, "signal": _OVER[over], "wall": wall}
    if os.WIFSIGNALED(status):
        return {"status": "signaled", "code": -1, "signal": os.WTERMSIG(status), "wall": wall}
    return {"status": "exited", "code": os.WEXITSTATUS(status), "signal": 0, "wall": wall}


def _wait(pid: int, uid: int | None, cell: Cell, limits: Limits, deadline: float) -> str | None:
    """Until the child exits: None; or the first limit it broke ("timeout", "memory", "cpu")."""
    watch = Watch(pid, uid, cell.group, group_memory_mb(limits), limits.cpu_s)
    fd = os.pidfd_open(pid)
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return "timeout"
            ready, _, _ = select.select([fd], [], [], min(left, POLL_S))
            if ready:
                return None
            over = watch.over()
            if over is not None:
                return over
    finally:
        os.close(fd)


def serve() -> None:
    """Be the zygote, in a process forked from the warm template (sandbox/template.py), which has run
    ``worker.preload`` already: mask the shared folders, enter the minimal view, answer requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    private_mounts = make_private_tmp()
    cgroup.sweep()
    if private_mounts:
        view.enter()  # from here on, this process and every candidate see only the minimal view
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        job = Job.model_validate_json(Path(req["job"]).read_text())
        limits = Limits.model_validate(req["limits"])
        reply = run_one(job, Path(req["workdir"]), limits, req.get("uid"), private_mounts)
        out.write(json.dumps(reply) + "\n")
        out.flush()
