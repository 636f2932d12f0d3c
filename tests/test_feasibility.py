"""Feasibility first: the tabular space holds a linear model, the smallest model each space builds is known
exactly, and a parameter limit below it is said at the start (offline: a refusal before any candidate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import logged

from llmnas.candidate import checks
from llmnas.candidate.layers import MutationError
from llmnas.candidate.scale import scale_to
from llmnas.cli import main
from llmnas.config import RunConfig
from llmnas.errors import UserError
from llmnas.propose import space
from llmnas.propose.controller import Controller
from llmnas.propose.offline import limit_note
from llmnas.run import start
from llmnas.task.spec import TaskSpec
from sandbox.protocol import TrainConfig


def _build(modality: str, point: tuple[int, ...], shape: tuple[int, ...], classes: int) -> torch.nn.Module:
    namespace: dict = {}
    exec(space.render(modality, point), namespace)  # trusted: our own renderer, in the test
    return namespace["build_model"](shape, classes)


def _blobs(tmp_path: Path, n: int = 150) -> Path:
    """Three well-separated classes of 4 features, like iris."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 4)).astype(np.float32) + 4 * np.eye(3, 4, dtype=np.float32)[y]
    path = tmp_path / "blobs.npz"
    np.savez(path, X=x, y=y)
    return path


def test_the_tabular_space_holds_a_linear_model_that_trains():
    point, size = space.smallest("tabular", (4,), 3)
    assert size == 4 * 3 + 3 and space.describe("tabular", point) == "a linear model"
    assert isinstance(checks.check(space.render("tabular", point)), checks.Checked)
    model = _build("tabular", point, (4,), 3)
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear"]
    torch.manual_seed(0)
    y = torch.arange(90) % 3
    x = torch.randn(90, 4) + 4 * torch.eye(3, 4)[y]
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert (model(x).argmax(1) == y).float().mean() > 0.9


@pytest.mark.parametrize(
    ("modality", "shape", "classes"),
    [
        ("tabular", (4,), 3),
        ("tabular", (13,), 1),
        ("tabular", (1000,), 1000),  # a 16-wide bottleneck is smaller than the linear model here
        ("image", (1, 8, 8), 10),
        ("image", (3, 32, 32), 100),
        ("sequence", (1, 150), 5),
        ("sequence", (6, 40), 1),
    ],
)
def test_the_smallest_size_is_what_torch_builds_and_no_sample_is_smaller(modality, shape, classes):
    point, size = space.smallest(modality, shape, classes)
    model = _build(modality, point, shape, classes)
    assert _stored(model) == size
    assert model(torch.zeros(2, *shape)).shape == (2, classes)
    rng = np.random.default_rng(0)
    samples = [space.sample_uniform(modality, rng) for _ in range(300)]
    assert min(space.param_count(modality, s, shape, classes) for s in samples) >= size
    for s in samples[:12]:  # the count is the driver's: every stored tensor, BatchNorm statistics included
        assert space.param_count(modality, s, shape, classes) == _stored(_build(modality, s, shape, classes))


def _stored(model: torch.nn.Module) -> int:
    return sum(t.numel() for t in model.state_dict().values())


def test_a_limit_below_the_smallest_model_is_named_and_only_a_warning_with_a_language_model():
    spec = TaskSpec(max_params=10).resolve(input_shape=(4,), num_classes=3, modality="tabular")
    note = limit_note(spec, llm=True)
    assert "at most 10 parameters" in note and "input (4,) and 3 classes has 15 parameters" in note
    assert "a linear model" in note
    with pytest.raises(UserError, match="allow at least 15 parameters"):
        limit_note(spec, llm=False)
    assert limit_note(spec.model_copy(update={"max_params": 15}), llm=False) is None


def test_an_infeasible_limit_stops_the_offline_search_before_any_candidate(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    argv = ["search", "classify into 3 classes, under 10 parameters", "--data", str(_blobs(tmp_path))]
    code = main([*argv, "--budget", "4", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "has 15 parameters (a linear model)" in err and "allow at least 15" in err
    assert not out.exists()


@pytest.mark.sandbox
def test_a_tight_limit_finds_the_linear_model(tmp_path):
    cfg = RunConfig(
        requirements="classify into 3 classes, under 20 parameters",
        data=str(_blobs(tmp_path)),
        budget=4,
        workers=2,
        seed=0,
        train=TrainConfig(max_steps=60, eval_every=20),
    )
    result = start(cfg, tmp_path / "run", progress=False, announce=lambda _: None)
    assert result.best is not None
    assert result.best.metrics["params"] == 15 and result.best.metrics["val_acc"] > 0.9
    evaluations = [e for e in logged(result.run_dir) if e["type"] == "evaluation"]
    assert evaluations and all(e["metrics"].get("params", 0) <= 20 for e in evaluations if e["ok"])


def test_a_controller_saved_for_another_space_is_refused_on_load():
    old = Controller((space.Decision("blocks", (1, 2, 3, 4)),) + space.decisions_for("tabular")[1:], seed=0)
    new = Controller(space.decisions_for("tabular"), seed=0)
    with pytest.raises(UserError, match="start a new run"):
        new.load_bytes(old.to_bytes())


def test_scaling_a_linear_model_says_there_is_nothing_to_scale():
    point, size = space.smallest("tabular", (4,), 3)
    with pytest.raises(MutationError, match="nothing to scale"):
        scale_to(space.render("tabular", point), size, 1000, (4,), 3)
