"""GPU path: candidates train on CUDA in the sandbox, one device per worker. Run with `pytest -m gpu`."""

from __future__ import annotations

import json

import pytest
import torch

from llmnas.cli import main

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CNN = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Conv2d(input_shape[0], 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))
"""


def test_eval_trains_on_cuda_in_the_sandbox(tmp_path, capsys):
    (tmp_path / "m.py").write_text(CNN)
    assert (
        main(
            [
                "eval",
                str(tmp_path / "m.py"),
                "--data",
                "digits",
                "--device",
                "cuda",
                "--steps",
                "300",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cuda" and out["metrics"]["val_acc"] > 0.5
    assert out["metrics"]["peak_mem_mb"] > 0 and out["metrics"]["latency_ms"] > 0


def test_search_spreads_workers_over_gpus(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "search",
                "classify digits; under 20k parameters",
                "--data",
                "digits",
                "--device",
                "cuda",
                "--budget",
                "4",
                "--workers",
                "2",
                "--steps",
                "200",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert {e["device"] for e in events if e["type"] == "evaluation" and "device" in e} == {"cuda"}
