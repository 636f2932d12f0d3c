"""Determinism under load: training is budgeted in steps, and nothing that steers the search depends on
wall time unless the task asks for it (a latency goal or limit)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from test_resume import REQ, _learning_state, _trajectory

from llmnas.config import RunConfig
from llmnas.engine.archive import Entry
from llmnas.engine.loop import archive_for
from llmnas.metrics import OBJECTIVES
from llmnas.run import start
from llmnas.task.spec import TaskSpec
from sandbox.protocol import TrainConfig
from sandbox.train import TrainingTimeout, train

HOG = "while True:\n    pass\n"


def _hogs(n: int = 2) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(n)]


@pytest.mark.sandbox
def test_same_seed_gives_the_same_run_under_cpu_load(tmp_path):
    """One run on a quiet machine, one beside two busy processes: the same decisions and scores; another
    seed decides differently."""
    cfg = RunConfig(
        requirements=REQ,
        data="digits",
        max_samples=300,
        budget=4,
        workers=2,
        seed=3,
        train=TrainConfig(max_steps=30, eval_every=10),
    )
    quiet = start(cfg, tmp_path / "quiet", progress=False, announce=lambda _: None)
    hogs = _hogs()
    try:
        loaded = start(cfg, tmp_path / "loaded", progress=False, announce=lambda _: None)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert _trajectory(quiet.run_dir) == _trajectory(loaded.run_dir)
    assert _learning_state(quiet.run_dir) == _learning_state(loaded.run_dir)
    other = start(
        cfg.model_copy(update={"seed": 4}), tmp_path / "other", progress=False, announce=lambda _: None
    )
    assert _trajectory(other.run_dir) != _trajectory(quiet.run_dir), "the seed changed nothing"


def _fit(cfg: TrainConfig, deadline: float | None = None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(64, 4, generator=torch.Generator().manual_seed(1)), torch.arange(64) % 3
    report = train(model, x, y, cfg, torch.Generator().manual_seed(0), torch.device("cpu"), deadline)
    return model, report


def test_training_runs_exactly_its_step_budget_and_repeats():
    cfg = TrainConfig(max_steps=25, eval_every=5, holdout_fraction=0.0)
    (a, ra), (b, rb) = _fit(cfg), _fit(cfg)
    assert ra.steps == rb.steps == 25 and not ra.stopped_on_time
    assert torch.equal(a.weight, b.weight)


def test_a_missed_step_budget_fails_loudly_instead_of_truncating():
    with pytest.raises(TrainingTimeout, match=r"budget of 25 steps was not reached .* \(stopped at step 0\)"):
        _fit(TrainConfig(max_steps=25), deadline=time.monotonic() - 1)


def test_training_by_time_is_flagged_as_not_reproducible():
    _, report = _fit(TrainConfig(max_steps=10**6, max_seconds=0.05, holdout_fraction=0.0))
    assert report.stopped_on_time and 0 < report.steps < 10**6


def _entries() -> list[Entry]:
    """Same accuracy and size; the second is only slower (timing noise, say)."""
    return [
        Entry("fast", {"val_acc": 0.9, "params": 1000, "latency_ms": 0.10}, 0.9, 2),
        Entry("slow", {"val_acc": 0.9, "params": 1000, "latency_ms": 0.12}, 0.9, 2),
    ]


def test_parent_selection_ignores_latency_without_a_latency_goal():
    archive = archive_for(TaskSpec(max_params=20_000))
    assert "latency_ms" not in dict(archive.objectives)
    for e in _entries():
        archive.add(e)
    assert {e.candidate_id for e in archive.front()} == {"fast", "slow"}


def test_parent_selection_uses_latency_with_a_latency_goal():
    for spec in (TaskSpec(max_latency_ms=1.0), TaskSpec(target_latency_ms=1.0)):
        archive = archive_for(spec)
        assert archive.objectives == OBJECTIVES
        for e in _entries():
            archive.add(e)
        assert [e.candidate_id for e in archive.front()] == ["fast"]
