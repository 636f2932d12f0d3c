"""A warm process that has imported torch and forks one confined child per candidate.

Line protocol on stdin/stdout (JSON, one object per line):
  in:  {"job": PATH, "workdir": PATH, "limits": {...}, "uid": INT|null}
  out: {"status": "exited"|"signaled"|"timeout", "code": INT, "signal": INT, "wall": SECONDS}
The zygote never runs a torch op itself, so no thread pool exists when it forks.
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
from sandbox.mounts import make_private_tmp
from sandbox.protocol import Job, Limits


def _leftovers(uid: int) -> bool:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    return True
            except OSError:
                continue
    return False


def _kill_uid(uid: int | None) -> None:
    """Kill every process of the candidate's uid: catches children that left its process group."""
    if uid is None or os.geteuid() != 0 or not _leftovers(uid):
        return
    pid = os.fork()
    if pid == 0:
        try:
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


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


def _cleanup(pid: int, uid: int | None) -> None:
    """Nothing a candidate started may outlive it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if os.getpid() == 1:  # inside our own pid namespace every other process is a candidate's
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
    else:
        _kill_uid(uid)
    _reap()


def run_one(job: Job, workdir: Path, limits: Limits, uid: int | None) -> dict:
    """Fork, confine and evaluate in the child; wait with a hard deadline; kill the group."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            worker.run_confined(job, workdir, limits, uid)
        finally:
            os._exit(4)
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], limits.timeout_s)
    finally:
        os.close(fd)
    timed_out = not ready
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    wall = time.perf_counter() - start
    _cleanup(pid, uid)
    if timed_out:
        return {"status": "timeout", "code": -1, "signal": signal.SIGKILL, "wall": wall}
    if os.WIFSIGNALED(status):
        return {"status": "signaled", "code": -1, "signal": os.WTERMSIG(status), "wall": wall}
    return {"status": "exited", "code": os.WEXITSTATUS(status), "signal": 0, "wall": wall}


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    make_private_tmp()
    worker.preload()
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        job = Job.model_validate_json(Path(req["job"]).read_text())
        reply = run_one(job, Path(req["workdir"]), Limits.model_validate(req["limits"]), req.get("uid"))
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
