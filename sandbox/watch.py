"""Watch one candidate while it runs: all its processes together against the memory and CPU limits.

rlimits count one process at a time (six children of 400 MiB each pass a 512 MiB RLIMIT_AS). With a
cgroup (sandbox/cgroup.py) the kernel bounds memory and process count; the watcher adds the CPU-seconds
total. Without one it sums, from /proc, the private memory (Private_Clean + Private_Dirty + Swap of
smaps_rollup: what the candidate added, not the pages it shares with the zygote) and CPU time of the
candidate's processes: those of its uid when it has one, else every process but us when we are pid 1
of our own namespace, else the candidate's session.

What it does NOT stop: a burst between two polls (0.1 s apart; RLIMIT_AS still caps each process),
and CPU time of children that exited without being waited for (RLIMIT_CPU still caps each).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from sandbox.cgroup import Group

POLL_S = 0.1
_TICK = os.sysconf("SC_CLK_TCK")


def members(pid: int, uid: int | None) -> list[int]:
    """The candidate's live processes, as far as /proc tells."""
    found = []
    inside = os.getpid() == 1
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            if uid is not None:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            elif inside or int(_stat_fields(int(entry.name))[3]) == pid:
                found.append(int(entry.name))
    return found


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is [0], session [3], utime [11])."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def private_mb(pid: int) -> float:
    kb = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:", "Swap:")):
                kb += int(line.split()[1])
    return kb / 1024


def cpu_seconds(pid: int) -> float:
    """User and system time of a process and of the children it waited for."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return sum(int(v) for v in _stat_fields(pid)[11:15]) / _TICK
    return 0.0


class Watch:
    """Polled by the zygote while it waits: ``over()`` names the limit the candidate broke, if any."""

    def __init__(self, pid: int, uid: int | None, group: Group | None, memory_mb: int, cpu_s: float):
        self.pid, self.uid, self.group = pid, uid, group
        self.memory_mb, self.cpu_s = memory_mb, cpu_s
        self.peak_mb = 0.0

    def over(self) -> str | None:
        """ "memory", "cpu" or None."""
        if self.group is not None:
            used = self.group.cpu_seconds()
            if used is not None and used > self.cpu_s:
                return "cpu"
            if self.group.oom_killed():
                return "memory"
            if used is not None:
                return None
        pids = members(self.pid, self.uid)
        if self.group is None:
            mb = sum(private_mb(p) for p in pids)
            self.peak_mb = max(self.peak_mb, mb)
            if mb > self.memory_mb:
                return "memory"
        if sum(cpu_seconds(p) for p in pids) > self.cpu_s:
            return "cpu"
        return None
