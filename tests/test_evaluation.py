"""`llmnas eval` and the evaluation cascade: metrics users select on, stages, pre-screening."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import logged

from llmnas.cli import main

pytestmark = pytest.mark.sandbox  # `llmnas eval` and searches: every test starts a pool

SMALL_CNN = """
import torch.nn as nn

def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Conv2d(input_shape[0], 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 64, num_classes))
"""
QUICK = ["--data", "digits", "--max-samples", "400", "--steps", "60"]


def _eval(tmp_path, code: str, *extra: str, capsys) -> tuple[int, dict]:
    (tmp_path / "m.py").write_text(code)
    status = main(["eval", str(tmp_path / "m.py"), *QUICK, *extra, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_eval_reports_every_metric(tmp_path, capsys, monkeypatch):
    private = Path(tempfile.mkdtemp(prefix="llmnas-test-tmp-"))  # other tests' eval folders stay out of it
    private.chmod(0o711)  # the sandbox's uid passes through to the pool folder inside
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    try:
        status, out = _eval(tmp_path, SMALL_CNN, capsys=capsys)
        assert list(private.iterdir()) == [], "eval without --out left folders in the temp folder"
    finally:
        shutil.rmtree(private, ignore_errors=True)
    assert "folder" not in out
    assert status == 0 and out["ok"]
    m = out["metrics"]
    assert m["params"] == 8 * 9 + 8 + 8 * 64 * 10 + 10
    assert m["flops"] > 2 * 8 * 64 * 10  # conv + linear, counted by torch.utils.flop_counter
    assert m["latency_ms"] > 0 and m["latency_iqr_ms"] >= 0
    assert m["peak_mem_mb"] >= 0 and m["train_steps"] == 60
    assert 0 <= m["val_acc"] <= 1 and 0 <= m["test_acc"] <= 1
    assert m["energy_kwh"] > 0 and m["co2_g"] == pytest.approx(m["energy_kwh"] * 475)


@pytest.mark.parametrize(
    ("code", "stage", "message"),
    [
        ("import os\ndef build_model(s, k):\n    return os", "static", "os"),
        ("def build_model(s, k):\n    raise ValueError('no luck')", "build", "no luck"),
        (
            "import torch.nn as nn\ndef build_model(s, k):\n    return nn.Linear(3, 3)",
            "shape",
            "forward on input (2, 1, 8, 8)",
        ),
        (
            "import torch.nn as nn\ndef build_model(s, k):\n    return nn.Flatten()",
            "shape",
            "expected (2, 10)",
        ),
        (
            "import torch.nn as nn\ndef build_model(s, k):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 50000),"
            " nn.Linear(50000, k))",
            "budget",
            "limit",
        ),
    ],
)
def test_eval_rejection_has_stage_message_and_exit_status(tmp_path, capsys, code, stage, message):
    (tmp_path / "m.py").write_text(code)
    status = main(["eval", str(tmp_path / "m.py"), *QUICK, "--requirements", "under 1M parameters"])
    out = capsys.readouterr().out
    assert status == 1
    assert out.startswith(f"rejected at stage {stage}:") and message in out


def test_prescreen_trains_only_the_top_of_each_round(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "search",
                "classify; under 20k parameters",
                *QUICK,
                "--budget",
                "8",
                "--workers",
                "2",
                "--prescreen",
                "synflow",
                "--prescreen-keep",
                "0.5",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    evaluations = [e for e in logged(out) if e["type"] == "evaluation"]
    screened = [e for e in evaluations if e["stage"] == "proxy"]
    trained = [e for e in evaluations if e["metrics"].get("train_steps")]
    assert screened and trained
    for r in {e["round"] for e in screened}:
        cut = max(e["metrics"]["proxies"]["synflow"] or float("-inf") for e in screened if e["round"] == r)
        kept = [e["metrics"]["proxies"]["synflow"] for e in trained if e["round"] == r]
        assert kept and min(kept) >= cut


def test_eval_out_never_overwrites_without_force(tmp_path, capsys):
    (tmp_path / "m.py").write_text(SMALL_CNN)
    out = tmp_path / "kept"
    out.mkdir()
    (out / "result.json").write_text("mine")
    assert main(["eval", str(tmp_path / "m.py"), *QUICK, "--out", str(out)]) == 2
    assert "would overwrite" in capsys.readouterr().err and (out / "result.json").read_text() == "mine"
    assert main(["eval", str(tmp_path / "m.py"), *QUICK, "--out", str(out), "--force"]) == 0
    assert json.loads((out / "result.json").read_text())["ok"]
