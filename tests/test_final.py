"""Small validation sets and --final-train (issue 17 point 6): the ranking rule is said when the
validation set is small, and the chosen model is trained again on train + validation, its test score
reported once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from llmnas.cli import main
from llmnas.engine.final import SMALL_VALIDATION, small_validation_note, train_and_validation
from llmnas.metrics import rank_key
from llmnas.results.read import load_run
from llmnas.task.datasets import load_dataset


def test_a_small_validation_set_states_how_ties_are_broken():
    note = small_validation_note(24, "classification")
    assert "24 samples" in note and "steps of 0.042" in note and "validation loss" in note
    assert small_validation_note(SMALL_VALIDATION, "classification") is None
    # The rule it states: equal accuracy is ranked by the evidence of the loss, then size, not by order.
    tied = [
        {"val_acc": 1.0, "val_loss": 0.30, "params": 50},
        {"val_acc": 1.0, "val_loss": 0.05, "params": 900},
    ]
    assert sorted(tied, key=rank_key)[0]["val_loss"] == 0.05


def test_train_and_validation_appends_the_validation_split_only():
    data = load_dataset("digits", seed=0, max_samples=200)
    merged = train_and_validation(data)
    assert len(merged.y_train) == len(data.y_train) + len(data.y_val)
    assert np.array_equal(merged.x_train[len(data.y_train) :], data.x_val)
    assert np.array_equal(merged.y_test, data.y_test) and merged.preprocessing == data.preprocessing


@pytest.mark.sandbox
def test_final_train_retrains_the_choice_and_reports_test_once(tmp_path: Path, capsys):
    out = tmp_path / "run"
    argv = ["search", "classify digits; under 20k parameters", "--data", "digits", "--max-samples", "300"]
    argv += ["--budget", "2", "--workers", "2", "--steps", "80", "--seed", "1", "--out", str(out)]
    assert main([*argv, "--final-train", "--val-fraction", "0.1"]) == 0
    printed = capsys.readouterr().out
    data = load_dataset("digits", seed=1, max_samples=300, val_fraction=0.1)
    merged = len(data.y_train) + len(data.y_val)
    assert f"Note: the validation set has {len(data.y_val)} samples" in printed
    assert f"trained again on train + validation ({merged} samples): test " in printed

    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    finals = [e for e in events if e["type"] == "final"]
    assert len(finals) == 1 and finals[0]["ok"] and events[-1]["type"] == "final"  # after the search
    best = load_run(out)
    chosen = min(best.passed, key=lambda c: rank_key(c.metrics))
    final = finals[0]
    assert final["candidate_id"] == chosen.candidate_id and final["train_samples"] == merged
    assert 0 <= final["metrics"]["test_acc"] <= 1
    assert all(v is None for k, v in final["metrics"].items() if k.startswith("val_"))  # it trained on val
    with safe_open(str(out / "final" / chosen.candidate_id / "weights.safetensors"), "np") as weights:
        assert list(weights.keys())  # a model of its own, trained on more data
    assert load_run(out).view.finals[0].candidate_id == chosen.candidate_id
    assert main(["report", str(out)]) == 0
    assert "trained again on train + validation (reported once)" in (out / "report.html").read_text()
