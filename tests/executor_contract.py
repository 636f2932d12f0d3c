"""The contract every Executor keeps, as plain functions: ``check(executor, data, tmp)``.

``executor`` holds ``data``'s worker files in ``executor.data_dir`` and runs candidates under
``CONTRACT_LIMITS`` (``TIMEOUT_LIMITS`` for ``timeout_ends_at_timeout``); ``tmp`` is a fresh folder for
run output. tests/test_executors.py runs each check against every implementation (the local pool and
Ray), so both answer the same way.
"""

from __future__ import annotations

import json
from concurrent.futures import as_completed
from pathlib import Path

import conftest
import numpy as np

from llmnas.task.datasets import Dataset
from sandbox.protocol import (
    DATA_FILES,
    PRED_FILES,
    RESULT_FILE,
    WEIGHTS_FILE,
    Job,
    Limits,
    Result,
    Stage,
)

# 15 s: a candidate that fails at once must end at its own stage (build, crash), not at the time limit, on a
# host busy with other llmnas runs too (4 s was not enough there: issue 31's "build error not ended at build").
CONTRACT_LIMITS = Limits(timeout_s=15, memory_mb=1024, cpu_s=20)
# The time limit itself is checked on an executor of its own with a short one: waiting out 15 s idle was
# the longest wait in the suite.
TIMEOUT_LIMITS = CONTRACT_LIMITS.model_copy(update={"timeout_s": 2})

GOOD = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))
"""

BUILD_ERROR = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    raise ValueError("no model for you")
"""

SLEEP = """
import time

import torch.nn as nn


def build_model(input_shape, num_classes):
    time.sleep({seconds})
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
"""

CRASH = """
import torch
import torch.nn as nn


def build_model(input_shape, num_classes):
    torch.os._exit(3)
    return nn.Linear(64, num_classes)
"""

# Both executors lay a node's sandbox out as ROOT/data next to ROOT/work-*, the candidate's cwd: the
# candidate looks at everything it can see there and reports it on stdout.
LIST_DATA = """
import os

import torch.nn as nn


def build_model(input_shape, num_classes):
    names = sorted(os.listdir(os.path.join(os.getcwd(), "..", "data")))
    print("data folder:", ",".join(names))
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
"""


def make_job(executor, data: Dataset, code: str, candidate_id: str, **overrides) -> Job:
    return conftest.make_job(executor, data, code, candidate_id=candidate_id, **overrides)


def run(executor, data: Dataset, code: str, out: Path, candidate_id: str = "c0", **overrides) -> Result:
    return executor.submit(make_job(executor, data, code, candidate_id, **overrides), out).result(timeout=120)


def recorded(out: Path) -> Result:
    """What the run folder says about a candidate: its result.json."""
    return Result.model_validate_json((out / RESULT_FILE).read_text())


def good_candidate_passes(executor, data: Dataset, tmp: Path) -> None:
    out = tmp / "good"
    result = run(executor, data, GOOD, out, "good")
    assert result.ok, result.message
    assert result.stage is None and result.candidate_id == "good"
    assert result.metrics.params == 64 * 32 + 32 + 32 * data.num_classes + data.num_classes
    assert result.metrics.train_steps > 0
    for name in (*PRED_FILES.values(), WEIGHTS_FILE, RESULT_FILE):
        assert (out / name).is_file(), f"{name} missing from the run folder"
    val = np.load(out / PRED_FILES["val"], allow_pickle=False)
    test = np.load(out / PRED_FILES["test"], allow_pickle=False)
    assert len(val) == len(data.x_val) and len(test) == len(data.x_test)
    assert recorded(out) == result


def build_error_ends_at_build(executor, data: Dataset, tmp: Path) -> None:
    out = tmp / "build"
    result = run(executor, data, BUILD_ERROR, out, "build")
    assert not result.ok and result.stage == Stage.build
    assert "no model for you" in result.message
    assert recorded(out) == result
    assert not (out / WEIGHTS_FILE).exists()


def timeout_ends_at_timeout(executor, data: Dataset, tmp: Path) -> None:
    limit = executor.limits.timeout_s
    result = run(executor, data, SLEEP.format(seconds=3600), tmp / "sleep", "sleep")
    assert not result.ok and result.stage == Stage.timeout, result.message  # a hang fails by pytest-timeout
    assert f"{limit:g} s time limit" in result.message


def crash_ends_at_crash(executor, data: Dataset, tmp: Path) -> None:
    out = tmp / "crash"
    result = run(executor, data, CRASH, out, "crash")
    assert not result.ok and result.stage == Stage.crash
    assert "status 3" in result.message
    assert recorded(out) == result


def labels_never_in_data_folder(executor, data: Dataset, tmp: Path) -> None:
    assert sorted(p.name for p in Path(executor.data_dir).iterdir()) == sorted(DATA_FILES)
    out = tmp / "look"
    result = run(executor, data, LIST_DATA, out, "look")
    assert result.ok, result.message
    seen = (out / "stdout.txt").read_text()
    assert f"data folder: {','.join(sorted(DATA_FILES))}" in seen, seen


def many_concurrent_submits_complete(executor, data: Dataset, tmp: Path, n: int = 8) -> None:
    futures = {
        executor.submit(make_job(executor, data, GOOD, f"many{i}", seed=i), tmp / f"many{i}"): i
        for i in range(n)
    }
    done = set()
    for fut in as_completed(futures, timeout=180):
        result = fut.result()
        i = futures[fut]
        assert result.ok and result.candidate_id == f"many{i}", result.message
        assert json.loads((tmp / f"many{i}" / RESULT_FILE).read_text())["candidate_id"] == f"many{i}"
        done.add(i)
    assert done == set(range(n))


def running(executor) -> int:
    """Candidates running now in ``executor``'s sandboxes: candidate folders (``work-*``) with a process
    working in them, in the pool's folder (local) or in each worker's (Ray)."""
    if hasattr(executor, "workers_info"):
        roots = [Path(info["root"]) for info in executor.workers_info()]
    else:
        roots = [Path(executor.root)]
    return sum(1 for root in roots for work in root.glob("work-*") if conftest.working_in(root, work.name))


def close_is_prompt(executor, data: Dataset, tmp: Path) -> None:
    """close() with a candidate in flight and one queued behind each worker: it ends them (the candidates
    sleep an hour: a close() that waits for them fails the test at its timeout) and every future is
    settled (a Result, or cancelled if it never started). The executor's own limit must exceed the
    test's timeout, so that nothing but close() can end the candidates."""
    futures = [
        executor.submit(make_job(executor, data, SLEEP.format(seconds=3600), f"long{i}"), tmp / f"long{i}")
        for i in range(2 * executor.workers)
    ]
    conftest.wait_until(lambda: running(executor) >= executor.workers, "a candidate running on every worker")
    executor.close()
    for fut in futures:
        assert fut.done()
        if not fut.cancelled():
            result = fut.result()
            assert not result.ok and result.stage != Stage.timeout, result


CHECKS = (
    good_candidate_passes,
    build_error_ends_at_build,
    crash_ends_at_crash,
    labels_never_in_data_folder,
    many_concurrent_submits_complete,
)
