"""One control group per candidate: memory, process count and CPU rate for all its processes together.

cgroup v2 where this process's group delegates the memory and pids controllers (a container or a
systemd unit with Delegate=yes), else the v1 hierarchies (memory, pids, cpu, cpuacct) where they are
mounted and writable (root). The zygote creates the group before the fork, the child joins it before it
drops privileges, and the zygote removes it once every process in it is gone.

What it does NOT stop: reading files, syscalls, anything within the limits; where no group can be
made (no root, no delegation), sandbox/watch.py sums the candidate's processes from /proc instead.
The memory limit counts what the candidate adds to the zygote's memory (pages it writes, its tmpfs
files too), not the pages it shares with the zygote.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")


def _mounts() -> list[tuple[str, str, str, set[str]]]:
    """(mount root, mount point, fstype, super options) of every cgroup mount we can see."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            head, _, tail = line.partition(" - ")
            fields, rest = head.split(), tail.split()
            if len(fields) >= 5 and len(rest) >= 3 and rest[0] in ("cgroup", "cgroup2"):
                found.append((fields[3], fields[4], rest[0], set(rest[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """This process's group per v1 controller, and under "" its v2 group."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name.removeprefix("name=")] = path
    return paths


def _join(mount_root: str, mount_point: str, path: str) -> Path:
    rel = os.path.relpath(path, mount_root) if path.startswith(mount_root) else path.lstrip("/")
    return Path(mount_point) / ("" if rel == "." else rel)


def v2_parent() -> Path | None:
    """Our v2 group, when it can hold children with the memory and pids controllers."""
    own = _own_paths().get("")
    for root, point, fstype, _ in _mounts():
        if fstype != "cgroup2" or own is None:
            continue
        parent = _join(root, point, own)
        wanted = {"memory", "pids", "cpu"} & set(_read(parent / "cgroup.controllers").split())
        enabled = set(_read(parent / "cgroup.subtree_control").split())
        for name in wanted - enabled:  # possible at the root, or in a group without processes
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text(f"+{name}")
        if {"memory", "pids"} <= set(_read(parent / "cgroup.subtree_control").split()):
            return parent
    return None


def v1_parents() -> dict[str, Path]:
    """Our v1 group per controller, for the controllers mounted here."""
    own, parents = _own_paths(), {}
    for root, point, fstype, options in _mounts():
        for name in V1_CONTROLLERS:
            if fstype == "cgroup" and name in options and name in own and name not in parents:
                parents[name] = _join(root, point, own[name])
    return parents


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@dataclass
class Group:
    """The directories of one candidate's group: one (v2) or one per controller (v1)."""

    version: int
    dirs: dict[str, Path] = field(default_factory=dict)

    @property
    def controllers(self) -> list[str]:
        return sorted(self.dirs)

    def join(self) -> None:
        """Move the calling process in (before it drops privileges; its children follow)."""
        for path in {str(p) for p in self.dirs.values()}:
            Path(path, "cgroup.procs").write_text(str(os.getpid()))

    def cpu_seconds(self) -> float | None:
        """CPU time used by every process that was ever in the group."""
        if self.version == 2:
            for line in _read(self.dirs["memory"] / "cpu.stat").splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
        elif "cpuacct" in self.dirs:
            text = _read(self.dirs["cpuacct"] / "cpuacct.usage").strip()
            return int(text) / 1e9 if text else None
        return None

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group for its memory limit."""
        if self.version == 2:
            events = _read(self.dirs["memory"] / "memory.events")
            return any(line.split()[1] != "0" for line in events.splitlines() if line.startswith("oom_kill "))
        control = _read(self.dirs["memory"] / "memory.oom_control")
        return any(line.split()[1] != "0" for line in control.splitlines() if line.startswith("oom_kill "))

    def pids(self) -> list[int]:
        found = set()
        for path in self.dirs.values():
            found.update(int(p) for p in _read(path / "cgroup.procs").split())
        return sorted(found)

    def kill(self) -> None:
        """SIGKILL every process in the group (cgroup.kill on v2, one by one on v1)."""
        if self.version == 2 and (self.dirs["memory"] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.dirs["memory"] / "cgroup.kill").write_text("1")
                return
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)

    def remove(self, deadline_s: float = 2.0) -> None:
        """Remove the directories once the group is empty (a killed process takes a moment to leave)."""
        end = time.monotonic() + deadline_s
        for path in {str(p) for p in self.dirs.values()}:
            while True:
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        break
                    self.kill()
                    time.sleep(0.01)


def create(name: str, memory_mb: int, nproc: int, cpus: float) -> Group | None:
    """A fresh group ``name`` with these limits, or None where the host gives us none."""
    limits = {
        "memory": {"memory.max": str(memory_mb * MIB), "memory.swap.max": "0"},
        "pids": {"pids.max": str(nproc)},
        "cpu": {"cpu.max": f"{int(cpus * PERIOD_US)} {PERIOD_US}"},
    }
    parent = v2_parent()
    if parent is not None:
        path = parent / name
        try:
            path.mkdir()
            enabled = set(_read(parent / "cgroup.subtree_control").split())
            for controller, files in limits.items():
                if controller in enabled:
                    for file, value in files.items():
                        if (path / file).exists():
                            (path / file).write_text(value)
            return Group(2, dict.fromkeys(("memory", "pids", "cpu"), path))
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
    v1 = {
        "memory": {
            "memory.limit_in_bytes": str(memory_mb * MIB),
            "memory.memsw.limit_in_bytes": str(memory_mb * MIB),
        },
        "pids": {"pids.max": str(nproc)},
        "cpu": {"cpu.cfs_period_us": str(PERIOD_US), "cpu.cfs_quota_us": str(int(cpus * PERIOD_US))},
        "cpuacct": {},
    }
    group = Group(1)
    for controller, parent_dir in v1_parents().items():
        path = parent_dir / name
        try:
            path.mkdir()
            group.dirs[controller] = path
            for file, value in v1[controller].items():
                if file.startswith("memory.memsw"):  # absent without swap accounting: best effort
                    _try_write(path / file, value)
                elif (path / file).exists():
                    (path / file).write_text(value)
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()
            group.dirs.pop(controller, None)
    if "memory" not in group.dirs:
        group.remove()
        return None
    return group


def _try_write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def sweep(prefix: str = "llmnas-", max_age_s: float = 60.0) -> int:
    """Remove empty groups a killed zygote left behind (older than ``max_age_s``, so never one that a
    live zygote just made for a child about to join). A group with processes cannot be removed."""
    parents = {p for p in (v2_parent(), *v1_parents().values()) if p is not None}
    removed = 0
    now = time.time()
    for parent in parents:
        with contextlib.suppress(OSError):
            for entry in os.scandir(parent):
                if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        if now - entry.stat().st_mtime > max_age_s:
                            os.rmdir(entry.path)
                            removed += 1
    return removed
