"""The warm template (sandbox/template.py): every zygote of a driver is forked from one, and it goes
with the driver however the driver ends."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llmnas.execute import stale
from llmnas.execute.local import LocalPool, _Slot, isolation_prefix
from tests.conftest import (
    GOOD_CNN,
    OS_LIMITS,
    SANDBOX_LIMITS,
    evaluate,
    make_job,
    wait_until,
    write_worker_data,
)

pytestmark = pytest.mark.sandbox
REPO = Path(__file__).resolve().parent.parent


def _pid(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}") as info:
        return int(next(line for line in info if line.startswith("Pid:")).split()[1])


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("PPid:")).split()[1])


def _ends(pid: int, within_s: float = 60.0) -> bool:
    """Whether process ``pid`` has ended (or ends within ``within_s``)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], within_s)[0])
    finally:
        os.close(fd)


def test_pools_of_one_driver_fork_their_zygotes_from_one_template(digits, tmp_path):
    parents = set()
    for i in range(2):
        with LocalPool(1, SANDBOX_LIMITS) as pool:
            write_worker_data(pool.data_dir, digits)
            assert evaluate(pool, digits, GOOD_CNN, tmp_path / str(i)).ok
            parents.add(_parent(_pid(pool._all[0].proc.pidfd)))
    (template,) = parents
    assert b"sandbox.template" in Path(f"/proc/{template}/cmdline").read_bytes()
    if "--net" in isolation_prefix():  # onnxruntime's telemetry in it cannot reach the network
        assert os.readlink(f"/proc/{template}/ns/net") != os.readlink("/proc/self/ns/net")


FORKS = """
import os
import time

import torch.nn as nn


def build_model(input_shape, num_classes):
    for _ in range(8):
        if os.fork() == 0:
            while True:
                pass
    time.sleep(60)
    return nn.Linear(1, num_classes)
"""


def _of_uid(uid: int) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            with open(f"{entry.path}/status") as status:
                if next(line for line in status if line.startswith("Uid:")).split()[1] == str(uid):
                    found.append(entry.name)
        except (OSError, StopIteration):
            pass
    return found


@pytest.mark.skipif(os.geteuid() != 0 or "--pid" not in isolation_prefix(), reason="needs candidate uids")
def test_a_stopped_zygote_has_ended_with_all_its_candidates(digits, tmp_path):
    """When a pool's close returns, no process of a candidate is left (its folder and uids go next)."""
    with LocalPool(1, OS_LIMITS) as pool:
        write_worker_data(pool.data_dir, digits)
        uid = pool._all[0].uid
        future = pool.submit(make_job(pool, digits, FORKS), tmp_path / "out")
        wait_until(lambda: len(_of_uid(uid)) >= 9, "the candidate and its 8 children")
    assert _of_uid(uid) == []
    assert not future.result().ok


def test_a_template_that_died_is_started_again(digits, tmp_path):
    """Killed (the OOM killer, a user), the template is replaced at the next zygote start; zygotes it
    forked before keep working."""
    parents = []
    with LocalPool(1, SANDBOX_LIMITS) as first:
        write_worker_data(first.data_dir, digits)
        assert evaluate(first, digits, GOOD_CNN, tmp_path / "a").ok
        parents.append(_parent(_pid(first._all[0].proc.pidfd)))
        os.kill(parents[0], signal.SIGKILL)
        assert _ends(parents[0])
        with LocalPool(1, SANDBOX_LIMITS) as second:
            write_worker_data(second.data_dir, digits)
            assert evaluate(second, digits, GOOD_CNN, tmp_path / "b").ok
            parents.append(_parent(_pid(second._all[0].proc.pidfd)))
        assert evaluate(first, digits, GOOD_CNN, tmp_path / "c").ok
    assert parents[1] != parents[0]
    assert b"sandbox.template" in Path(f"/proc/{parents[1]}/cmdline").read_bytes()


def test_a_zygote_that_cannot_start_says_why(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(tmp_path / "missing")}
    slot = _Slot(tmp_path, None, env, zygote=True)
    with pytest.raises(RuntimeError, match="sandbox zygote failed to start.*FileNotFoundError"):
        slot.start()


DRIVER = """
import json, sys
from pathlib import Path
from llmnas.execute.local import LocalPool
from llmnas.task.datasets import load_dataset
from tests.conftest import GOOD_CNN, SANDBOX_LIMITS, evaluate, write_worker_data
from tests.test_template import _pid
data = load_dataset("digits", seed=0, max_samples=300)
pool = LocalPool(1, SANDBOX_LIMITS)
write_worker_data(pool.data_dir, data)
assert evaluate(pool, data, GOOD_CNN, Path(sys.argv[1])).ok
from llmnas.execute import template
(held,) = template._templates.values()
print(json.dumps({"template": held.proc.pid, "home": str(held.home), "zygote": _pid(pool._all[0].proc.pidfd)}), flush=True)
sys.stdin.readline()  # then a normal exit
"""


def _driver(tmp_path: Path) -> tuple[subprocess.Popen, dict]:
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "out")],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids = json.loads(driver.stdout.readline())
    assert not _ends(pids["template"], 0) and not _ends(pids["zygote"], 0)
    return driver, pids


def test_a_killed_driver_takes_its_template_and_zygotes_with_it(tmp_path):
    driver, pids = _driver(tmp_path)
    assert Path(pids["home"]).is_dir()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    assert _ends(pids["template"]) and _ends(pids["zygote"])
    # The template's home is swept as a dead driver's pool folder: here, or already by a pool that another
    # process (an xdist worker) started meanwhile.
    stale.sweep_stale()
    assert not Path(pids["home"]).exists()


def test_a_driver_that_exits_leaves_no_template_or_folder(tmp_path):
    driver, pids = _driver(tmp_path)
    driver.communicate("exit\n", timeout=60)
    assert driver.returncode == 0
    assert _ends(pids["template"]) and _ends(pids["zygote"])
    assert not Path(pids["home"]).exists()
