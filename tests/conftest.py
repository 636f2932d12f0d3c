"""Shared fixtures: a small real dataset, warm sandboxed pools that hold it, and a way to run code there.

The pool is session-scoped: its zygotes start on first use (about two seconds) and every test that
evaluates candidate code shares them. Jobs get a short training budget so each evaluation takes well
under a second.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

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

GOOD_CNN = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, num_classes),
    )
"""


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
