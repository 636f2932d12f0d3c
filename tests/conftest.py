"""Shared fixtures: a small real dataset, warm sandboxed pools that hold it, and a way to run code there.

The pool is session-scoped: its zygotes start on first use (about two seconds) and every test that
evaluates candidate code shares them. Jobs get a short training budget so each evaluation takes well
under a second.

Tiers: a test that starts a sandbox pool, zygote or worker, a search run, or any other process of its own
is marked ``sandbox`` and stays out of ``make unit`` (``-m "not sandbox ..."``). The mark comes from the
fixtures it uses (``SANDBOX_FIXTURES`` here, and a test module's own ``SANDBOX_FIXTURES`` for its module
fixtures), or is written on the test (``@pytest.mark.sandbox``) or its module (``pytestmark``). The
bounded parser's helper process (llmnas/candidate/bounded.py) is part of the code under test and no
reason for the mark. A test that loads a pretrained language model or trains one for tens of seconds is
marked ``model`` (written on the test) and stays out of the unit tier too. A test of ten seconds or more
whose fixtures are all function- or session-scoped is marked ``long``: those and the ``model`` tests run
first, so that the suite ends on short tests that spread over the workers.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from llmnas.execute.local import LocalPool
from llmnas.runs.events import replay
from llmnas.runs.layout import RunLayout
from llmnas.task.datasets import Dataset, load_dataset
from sandbox.protocol import DATA_FILES, Job, Limits, Result, TrainConfig

SANDBOX_LIMITS = Limits(timeout_s=10, memory_mb=1024, cpu_s=20)
# The same limits without the audit hook: what is left is the operating system (an unprivileged uid,
# rlimits, network, pid and mount namespaces, a private folder). The hostile corpus runs here too.
OS_LIMITS = SANDBOX_LIMITS.model_copy(update={"audit_hook": False})
FAST_TRAIN = TrainConfig(max_steps=20, eval_every=10)
# The fixtures below that start a pool; a test using any of them (directly or through another fixture)
# is marked ``sandbox``.
SANDBOX_FIXTURES = frozenset({"pool", "os_pool", "run_candidate"})

GOOD_CNN = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )
"""


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the ``sandbox`` tests; put the long ones (``model``, ``long``) first: a worker that ends on
    one leaves the others idle."""
    for item in items:
        own = getattr(getattr(item, "module", None), "SANDBOX_FIXTURES", ())
        if (SANDBOX_FIXTURES | set(own)) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sandbox)
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in ("model", "long")))


T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = 60, every_s: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail the test naming
    ``what`` if ``timeout_s`` passes first. Tests wait on an event this way, never on a bare sleep."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)
    return value


def working_in(root: Path, folder: str = "") -> list[int]:
    """Pids whose working folder is inside ``root`` (only in its entries whose names start with ``folder``
    when given). A pool's zygotes work in ``<root>/slot*``, a candidate in ``<root>/work-*`` from the moment
    it is confined (sandbox/limits.py: ``confine``) until it ends."""
    prefix = f"{root}{os.sep}{folder}"
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and os.readlink(entry / "cwd").startswith(prefix):
                pids.append(int(entry.name))
    return pids


def logged(run_dir: Path) -> list[dict]:
    """A run's events as plain JSON dicts, read through the one replay() every reader uses."""
    return [e.model_dump(mode="json") for e in replay(RunLayout(run_dir).events).events]


def write_worker_data(folder: Path, data: Dataset) -> None:
    """The four files a worker may read (no validation or test labels), world-readable."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    arrays = (data.x_train, data.y_train, data.x_val, data.x_test)
    for name, array in zip(DATA_FILES, arrays, strict=True):
        np.save(folder / name, np.ascontiguousarray(array), allow_pickle=False)
        (folder / name).chmod(0o644)


def make_job(pool: LocalPool, data: Dataset, code: str, **overrides) -> Job:
    """A job for ``code`` on ``data`` in ``pool``; the id is a hash of the code unless given."""
    fields = {
        "candidate_id": hashlib.sha256(code.encode()).hexdigest()[:12],
        "code": code,
        "data_dir": str(pool.data_dir),
        "input_shape": data.input_shape,
        "num_classes": data.num_classes,
        "seed": 0,
        "train": FAST_TRAIN,
        "latency_runs": 5,
    }
    return Job(**(fields | overrides))


def evaluate(pool: LocalPool, data: Dataset, code: str, out_dir: Path, **overrides) -> Result:
    """Run ``code`` through the sandbox exactly as a search would, and wait for its Result."""
    return pool.submit(make_job(pool, data, code, **overrides), Path(out_dir)).result()


@pytest.fixture(scope="session")
def digits() -> Dataset:
    """sklearn's 8x8 digits, 300 samples: 218 train, 41 validation, 41 test, 10 classes."""
    return load_dataset("digits", seed=0, max_samples=300)


@pytest.fixture(scope="session")
def pool(digits: Dataset):
    """Two sandboxed workers with short limits, holding ``digits`` in ``pool.data_dir``."""
    with LocalPool(2, SANDBOX_LIMITS) as p:
        write_worker_data(p.data_dir, digits)
        yield p


@pytest.fixture(scope="session")
def os_pool(digits: Dataset):
    """Like ``pool``, with the audit hook off (``OS_LIMITS``): only the OS layers confine candidates."""
    with LocalPool(2, OS_LIMITS) as p:
        write_worker_data(p.data_dir, digits)
        yield p


@pytest.fixture
def run_candidate(pool: LocalPool, digits: Dataset, tmp_path: Path):
    """``run_candidate(code, out_dir=None, **job_fields) -> Result`` through the shared pool.

    The artefacts land in ``out_dir`` (default: a fresh folder under ``tmp_path``).
    """
    counter = iter(range(1_000_000))

    def run(code: str, out_dir: Path | None = None, **overrides) -> Result:
        out = Path(out_dir) if out_dir is not None else tmp_path / f"candidate-{next(counter)}"
        return evaluate(pool, digits, code, out, **overrides)

    return run
