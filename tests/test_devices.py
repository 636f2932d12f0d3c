"""Where candidates and a local model run: --device resolution as a pure rule, the job's device taken from
the executor, and a worker that cannot see the GPU it was asked to use (an error, never a CPU run).

No GPU is needed: the CUDA side of the rule is given as ``cuda_available``; tests/test_gpu.py and
bench/gpu_check.sh run the real thing on a CUDA machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import GOOD_CNN, SANDBOX_LIMITS, evaluate, write_worker_data

from llmnas.cli import main
from llmnas.config import RunConfig, resolve_device
from llmnas.engine.evaluation import make_job
from llmnas.errors import UserError
from llmnas.execute.local import LocalPool
from llmnas.run import local_pool
from llmnas.task.requirements import parse_requirements
from sandbox.protocol import WEIGHTS_FILE, Stage

NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize(
    ("requested", "cuda_available", "device"),
    [
        ("auto", True, "cuda"),
        ("auto", False, "cpu"),
        ("cuda", True, "cuda"),
        ("cpu", True, "cpu"),
        ("cpu", False, "cpu"),
    ],
)
def test_device_resolution(requested, cuda_available, device):
    assert resolve_device(requested, cuda_available) == device


def test_cuda_without_a_gpu_is_an_error_that_says_where():
    with pytest.raises(UserError, match="--device cuda: no CUDA device is visible here; use --device cpu"):
        resolve_device("cuda", False)
    with pytest.raises(UserError, match="visible in the Ray cluster"):
        resolve_device("cuda", False, where="in the Ray cluster")
    with pytest.raises(UserError, match="use cpu, cuda or auto"):
        resolve_device("tpu", True)


class _Executor:
    """What make_job reads of an executor."""

    def __init__(self, device: str):
        self.device, self.data_dir = device, Path("/nowhere")


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_jobs_train_where_the_executor_resolved_the_device(device, digits):
    cfg = RunConfig(requirements="classify", device="auto")
    spec = parse_requirements("classify").resolve(
        input_shape=digits.input_shape, num_classes=digits.num_classes, modality=digits.modality
    )
    assert make_job(cfg, spec, digits, _Executor(device), "c1", "code").device == device


@pytest.mark.sandbox
@pytest.mark.skipif(not NO_CUDA, reason="shows the CPU side of auto")
def test_auto_on_a_machine_without_cuda_trains_on_the_cpu():
    with local_pool(RunConfig(requirements="classify", device="auto"), 1) as pool:
        assert pool.device == "cpu"


@pytest.mark.skipif(not NO_CUDA, reason="needs a machine without CUDA")
def test_search_with_cuda_but_no_gpu_stops_before_it_starts(tmp_path, capsys):
    argv = ["search", "classify digits", "--device", "cuda", "--budget", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "--device cuda: no CUDA device is visible here" in capsys.readouterr().err
    assert not (tmp_path / "r" / "events.jsonl").exists()


@pytest.mark.sandbox
def test_a_worker_that_cannot_see_the_gpu_fails_the_candidate(digits, tmp_path, monkeypatch):
    """A CUDA job on a worker with CUDA_VISIBLE_DEVICES='' (through the real sandbox): a crash that
    says why, no weights: nothing trained on the CPU instead."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with LocalPool(1, SANDBOX_LIMITS) as pool:
        write_worker_data(pool.data_dir, digits)
        result = evaluate(pool, digits, GOOD_CNN, tmp_path / "c", device="cuda")
    assert not result.ok and result.stage == Stage.crash
    assert "this worker sees no CUDA device (CUDA_VISIBLE_DEVICES='')" in result.message
    assert "--device cpu" in result.message
    assert result.device == "cuda" and result.metrics is None
    assert not (tmp_path / "c" / WEIGHTS_FILE).exists()
