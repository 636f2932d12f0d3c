"""A pytest plugin: the CPU-seconds each test costs, its sandboxes, templates and subprocesses included,
for finding where the suite's CPU goes. Run the tests serially. Inside a cgroup v1 ``cpuacct`` group of
its own (as root: ``mkdir /sys/fs/cgroup/cpuacct/prof; echo $$ > /sys/fs/cgroup/cpuacct/prof/tasks``)
it counts that group's usage, which holds every descendant (the sandbox nests its groups inside), so other
work on the machine does not count; elsewhere it counts the whole machine's busy time, which needs a quiet
machine:

    PYTHONPATH=bench .venv/bin/python -m pytest -p cpu_by_test -p no:xdist -q [tests...] --cpu-out cpu.jsonl
    .venv/bin/python bench/cpu_by_test.py cpu.jsonl          # the tests and files that cost most
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

TICK = os.sysconf("SC_CLK_TCK")


def _own_group() -> Path | None:
    """This process's cgroup v1 cpuacct usage file, when it is in a group of its own (not the root)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(",") and path != "/":
            usage = Path("/sys/fs/cgroup/cpuacct") / path.lstrip("/") / "cpuacct.usage"
            return usage if usage.exists() else None
    return None


GROUP = _own_group()


def busy_seconds() -> float:
    """CPU-seconds spent by this cgroup, or else by the whole machine (all but idle and iowait)."""
    if GROUP is not None:
        return int(GROUP.read_text()) / 1e9
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--cpu-out", default="test-cpu.jsonl", help="where to write one line per test")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):
    cpu, wall = busy_seconds(), time.monotonic()
    yield
    row = {"test": item.nodeid, "cpu_s": busy_seconds() - cpu, "wall_s": time.monotonic() - wall}
    with open(item.config.getoption("--cpu-out"), "a") as out:
        out.write(json.dumps(row) + "\n")


def main() -> None:
    rows = [json.loads(line) for line in Path(sys.argv[1]).read_text().splitlines()]
    by_file: dict[str, float] = defaultdict(float)
    for r in rows:
        by_file[r["test"].split("::")[0]] += r["cpu_s"]
    total = sum(r["cpu_s"] for r in rows)
    print(f"{len(rows)} tests, {total:.0f} CPU-s, {sum(r['wall_s'] for r in rows):.0f} s wall (serial)")
    print("\n  CPU-s   wall  test")
    for r in sorted(rows, key=lambda r: -r["cpu_s"])[:40]:
        print(f"{r['cpu_s']:7.1f} {r['wall_s']:6.1f}  {r['test']}")
    print("\n  CPU-s  file")
    for name, cpu in sorted(by_file.items(), key=lambda kv: -kv[1])[:25]:
        print(f"{cpu:7.1f}  {name}")


if __name__ == "__main__":
    main()
