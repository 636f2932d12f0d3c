"""Where a command's CPU time goes, by kind of process (issue 31: what makes ``make test`` slow).

Runs a command (default: ``make test``'s pytest line) and samples /proc every 50 ms meanwhile: each
process's user + system CPU seconds, from when it was first seen to when it was last seen. Processes are
grouped by their command line with paths and arguments dropped (``sandbox.zygote``, ``onnx_check``, the
xdist workers ...); a process forked from one of its own kind (a zygote's candidates) is counted apart,
as ``(forked)``, so a warm process's start-up and the work it forks show separately. Also
printed: the machine's busy and idle CPU seconds over the whole command (/proc/stat), which include what
the sampler missed (processes shorter than a sample) and the sampler's own cost.

    .venv/bin/python bench/cpu_by_process.py [--top 25] [-- COMMAND ...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTEST = [sys.executable, "-m", "pytest", "-q", "-n", "auto", "--maxprocesses", "4", "--dist", "worksteal"]
TICK = os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """Busy and idle CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, *_ = map(int, f.readline().split()[1:])
    return (user + nice + system + irq + softirq) / TICK, (idle + iowait) / TICK


def kind(cmdline: bytes, comm: str) -> str:
    """A process's group: the module or script it runs, without paths and arguments (a kernel thread or a
    process already gone: its command name)."""
    args = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    if not args:
        return comm
    words = []
    for a in args[:6]:
        if a.startswith("-") and a not in ("-m", "-c"):
            continue
        words.append(Path(a).name if "/" in a else a)
        if len(words) == 3:
            break
    return re.sub(r"\s+", " ", " ".join(words))[:70]


class Sampler(threading.Thread):
    def __init__(self, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.every_s, self.done = every_s, threading.Event()
        self.seen: dict[tuple[int, int], list] = {}  # (pid, start) -> [first cpu, last cpu, kind, ppid]

    def run(self) -> None:
        first_pass = True
        while not self.done.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    stat = Path(entry.path, "stat").read_text()
                    cmdline = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                comm, rest = stat.split("(", 1)[1].rsplit(")", 1)
                fields = rest.split()
                cpu = (int(fields[11]) + int(fields[12])) / TICK
                key = (int(entry.name), int(fields[19]))
                if key in self.seen:
                    self.seen[key][1] = cpu
                else:  # a process alive before the command counts from now; a new one from its start
                    self.seen[key] = [cpu if first_pass else 0.0, cpu, kind(cmdline, comm), int(fields[1])]
            first_pass = False
            time.sleep(self.every_s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("command", nargs="*", help="the command to run (after --); default: make test's pytest")
    args = ap.parse_args()
    command = args.command or PYTEST
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    sampler = Sampler()
    busy0, idle0 = machine_cpu()
    start = time.monotonic()
    sampler.start()
    code = subprocess.call(command, cwd=ROOT, env=env)
    sampler.done.set()
    sampler.join()
    wall = time.monotonic() - start
    busy1, idle1 = machine_cpu()
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    kinds = {pid: row[2] for (pid, _), row in sampler.seen.items()}
    for first, last, name, ppid in sampler.seen.values():
        if kinds.get(ppid) == name:
            name += " (forked)"
        if last > first:
            groups[name][0] += last - first
            groups[name][1] += 1
    sampled = sum(cpu for cpu, _ in groups.values())
    print(
        f"\nexit {code}, wall {wall:.0f} s; machine: busy {busy1 - busy0:.0f} CPU-s, idle {idle1 - idle0:.0f} CPU-s"
    )
    print(f"sampled in processes: {sampled:.0f} CPU-s\n\n  CPU-s  share  processes  kind")
    for name, (cpu, n) in sorted(groups.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{cpu:7.1f}  {cpu / sampled:5.1%}  {n:9d}  {name}")
    return code


if __name__ == "__main__":
    sys.exit(main())
