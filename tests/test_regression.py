"""Regression end to end: requirements and data that ask for a number, its splits, the driver's MAE/RMSE/R²,
ranking, reward and the run's tables and report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmnas.cli import main
from llmnas.config import RunConfig
from llmnas.engine.reward import reward
from llmnas.engine.scoring import ScoringError, score
from llmnas.llm.prompts import format_spec
from llmnas.metrics import quality, rank_key
from llmnas.run import make_spec
from llmnas.runs.events import Metrics
from llmnas.task.datasets import load_data, load_dataset
from llmnas.task.loaders import DatasetError
from llmnas.task.requirements import parse_requirements
from llmnas.task.spec import SpecError, TaskSpec
from sandbox.protocol import PRED_FILES, WEIGHTS_FILE

# ------------------------------------------------------------------------------------------- requirements


@pytest.mark.parametrize(
    ("text", "mae", "rmse", "r2"),
    [
        ("predict the price, mean absolute error under 5", 5.0, None, None),
        ("predict house prices; MAE below 3.5 and R² above 0.8", 3.5, None, 0.8),
        ("regression of disease progression; RMSE <= 50; under 5k parameters", None, 50.0, None),
        ("estimate the temperature from the sensors", None, None, None),
    ],
)
def test_requirements_that_ask_for_a_number_are_regression(text, mae, rmse, r2):
    spec = parse_requirements(text)
    assert spec.task == "regression"
    assert (spec.floors.get("mae"), spec.floors.get("rmse"), spec.floors.get("r2")) == (mae, rmse, r2)
    assert not spec.not_understood


def test_classification_words_stay_classification():
    for text in ("classify digits; under 20k parameters", "predict the class of each signal"):
        assert parse_requirements(text).task == "classification"
    assert "task" not in parse_requirements("under 20k parameters").model_fields_set  # the data decides


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("detect objects in street images", "object detection"),
        ("semantic segmentation of roads", "segmentation"),
        ("generate text like Shakespeare", "generation"),
        ("write captions for photos", "captioning"),
        ("translate English to French", "translation"),
    ],
)
def test_unsupported_task_kinds_stop_with_one_line_naming_what_is_supported(text, kind):
    with pytest.raises(SpecError) as err:
        parse_requirements(text)
    message = str(err.value)
    assert kind in message and "classification" in message and "regression" in message
    assert "\n" not in message


def test_contradictions_name_both_clauses():
    with pytest.raises(SpecError, match='"classify images" asks for classification and "predict the price"'):
        parse_requirements("classify images, predict the price")
    with pytest.raises(SpecError, match='"MAE under 5" says 5 and "MAE under 3" says 3'):
        parse_requirements("predict the price; MAE under 5; MAE under 3")


# ------------------------------------------------------------------------------------------------- data


def test_diabetes_is_an_offline_regression_builtin(tmp_path: Path):
    data = load_dataset("diabetes", seed=0)
    assert data.task == "regression" and data.num_classes == 1 and data.class_names == ()
    assert data.input_shape == (10,) and data.modality == "tabular"
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 442
    assert data.y_val.dtype == np.float32 and data.y_val.min() >= 25 and data.y_val.max() <= 346  # own units
    data.write_worker_files(tmp_path)
    worker_y = np.load(tmp_path / "train_y.npy")
    assert abs(worker_y.mean()) < 1e-4 and abs(worker_y.std() - 1) < 1e-3  # standardised for training
    assert np.allclose(worker_y * data.target_std + data.target_mean, data.y_train, atol=1e-3)
    assert not (tmp_path / "val_y.npy").exists() and not (tmp_path / "test_y.npy").exists()
    again = load_dataset("diabetes", seed=0)
    assert np.array_equal(again.y_test, data.y_test)  # fixed by the seed


def _csv(path: Path, target: list[str]) -> Path:
    rng = np.random.default_rng(0)
    rows = [
        f"{a:.3f},{b:.3f},{t}" for (a, b), t in zip(rng.normal(size=(len(target), 2)), target, strict=True)
    ]
    path.write_text("a,b,price\n" + "\n".join(rows) + "\n")
    return path


def test_a_numeric_target_column_gives_regression(tmp_path: Path):
    prices = [f"{100 + 7.5 * i:.2f}" for i in range(40)]
    path = _csv(tmp_path / "houses.csv", prices)
    data = load_dataset(str(path), seed=1, label_column="price")
    assert data.task == "regression"
    whole = _csv(tmp_path / "whole.csv", [str(100 + i) for i in range(40)])  # whole numbers: classes...
    cfg = RunConfig(requirements="predict the price", data=str(whole), label_column="price")
    assert load_data(cfg).task == "regression"  # ...unless the requirements ask for a number
    spec = make_spec(cfg, load_data(cfg))
    assert spec.task == "regression" and spec.num_classes == 1
    assert "one value per sample" in format_spec(spec)


def test_regression_data_errors_are_one_actionable_line(tmp_path: Path):
    words = _csv(tmp_path / "words.csv", ["cheap", "dear"] * 20)
    with pytest.raises(DatasetError, match="regression needs numeric targets, found 'cheap'"):
        load_dataset(str(words), seed=0, task="regression", label_column="price")
    halves = _csv(tmp_path / "halves.csv", [str(i + 0.5) for i in range(40)])
    with pytest.raises(DatasetError, match="ask for regression"):
        load_dataset(str(halves), seed=0, task="classification", label_column="price")
    flat = _csv(tmp_path / "flat.csv", ["2.5"] * 40)
    with pytest.raises(DatasetError, match="constant"):
        load_dataset(str(flat), seed=0, task="regression", label_column="price")
    few = _csv(tmp_path / "few.csv", ["1.5", "2.5", "3.5", "4.5"])
    with pytest.raises(DatasetError, match="too few to split"):
        load_dataset(str(few), seed=0, label_column="price")


def test_requirements_and_data_that_disagree_are_a_spec_error():
    data = load_dataset("diabetes", seed=0)
    with pytest.raises(SpecError, match="ask for classification but --data holds a regression target"):
        make_spec(RunConfig(requirements="classify the patients", data="diabetes"), data)
    digits = load_dataset("digits", seed=0)
    with pytest.raises(SpecError, match="ask for regression but --data holds a classification target"):
        parse_requirements("under 20k parameters; MAE under 3").resolve(
            input_shape=digits.input_shape, num_classes=10, modality="image", task="classification"
        )


# ---------------------------------------------------------------------------------------------- scoring


def _predictions(folder: Path, val: np.ndarray, test: np.ndarray) -> Path:
    folder.mkdir()
    np.save(folder / PRED_FILES["val"], val.astype(np.float32)[:, None])
    np.save(folder / PRED_FILES["test"], test.astype(np.float32)[:, None])
    save_file({"w": np.zeros((3, 4), dtype=np.float32)}, str(folder / WEIGHTS_FILE))
    return folder


def test_the_driver_scores_regression_in_the_targets_units(tmp_path: Path):
    data = load_dataset("diabetes", seed=0)
    z = lambda y: (y - data.target_mean) / data.target_std  # noqa: E731 - what a perfect worker returns
    perfect = score(_predictions(tmp_path / "p", z(data.y_val), z(data.y_test)), data)
    assert perfect["val_mae"] < 1e-3 and perfect["val_rmse"] < 1e-3 and perfect["val_r2"] > 0.999999
    assert "val_acc" not in perfect and "params" not in perfect  # sizes are the artifact's, not the score's
    off = score(_predictions(tmp_path / "o", z(data.y_val + 10), z(data.y_test - 10)), data)
    assert off["val_mae"] == pytest.approx(10, abs=1e-3) and off["test_rmse"] == pytest.approx(10, abs=1e-3)
    mean = np.zeros(len(data.y_val))  # the training mean everywhere: R² near 0, never above
    flat = score(_predictions(tmp_path / "m", mean, np.zeros(len(data.y_test))), data)
    assert -0.2 < flat["val_r2"] < 0.05
    wild = score(_predictions(tmp_path / "w", np.full(len(data.y_val), 3e38), mean[: len(data.y_test)]), data)
    Metrics.model_validate(wild)  # clipped: finite and within the schema's bounds
    assert wild["val_r2"] < -1e6
    nan = np.full(len(data.y_val), np.nan)
    with pytest.raises(ScoringError, match="NaN/inf"):
        score(_predictions(tmp_path / "n", nan, np.zeros(len(data.y_test))), data)


def test_r2_ranks_and_rewards_regression_candidates():
    good = {"val_r2": 0.6, "val_mae": 40.0, "val_loss": 0.4, "params": 900}
    bad = {"val_r2": -3.0, "val_mae": 90.0, "val_loss": 4.0, "params": 100}
    assert quality(good) == 0.6 and sorted([bad, good], key=rank_key)[0] is good
    spec = TaskSpec(task="regression", floors={"mae": 50.0})
    assert reward(bad, spec) < reward(good, spec)
    assert reward(good, spec) > reward(good, TaskSpec(task="regression"))  # under the MAE target: a bonus
    assert reward(bad, TaskSpec(task="regression")) == 0.0  # negative R² floors at 0, above any failure
    steering = Metrics(**good, test_r2=0.5, test_mae=3.0).steering()
    assert set(steering) == {*good, "proxies"}  # test scores never steer


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.sandbox
def test_a_regression_search_runs_end_to_end(tmp_path: Path, capsys):
    out = tmp_path / "run"
    argv = ["search", "predict disease progression, MAE under 60; under 3k parameters", "--data", "diabetes"]
    argv += ["--budget", "3", "--workers", "2", "--steps", "150", "--seed", "0", "--out", str(out), "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    best = summary["best"]
    assert 0 < best["val_r2"] <= 1 and best["val_mae"] > 0 and "test_r2" in best and "val_acc" not in best
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    evals = [e for e in events if e["type"] == "evaluation" and e["ok"]]
    assert evals and all({"val_r2", "val_mae", "val_rmse", "test_mae"} <= set(e["metrics"]) for e in evals)
    assert json.loads((out / "run.json").read_text())["spec"]["task"] == "regression"
    assert main(["show", str(out)]) == 0
    table = capsys.readouterr().out
    assert "val R²" in table and "val MAE" in table and "val acc" not in table
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "best val R²" in page and "validation R² / MAE / RMSE" in page
    _exported_model_predicts_values(out / "best", best)


USER = r"""
import json, sys
import numpy as np, onnxruntime, preprocess
from model import load

raw = np.load(sys.argv[1], allow_pickle=False)
values = load(trust_code=True).predict(raw)
with open("data.json") as f:
    pre = preprocess.Preprocessing.from_json(json.load(f)["preprocessing"])
session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
onnx = preprocess.values(pre, session.run(None, {"input": raw.astype(np.float32)})[0])
print(json.dumps({"values": values.tolist(), "onnx": onnx.tolist()}))
"""


def _exported_model_predicts_values(best: Path, recorded: dict):
    """best/ takes raw diabetes rows and gives progression values whose test MAE is the recorded one."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(scaled=False)
    samples = json.loads((best / "data.json").read_text())["test_samples"]
    np.save(best.parent / "raw.npy", bunch.data[samples], allow_pickle=False)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMNAS_TRUST_CODE")}
    done = subprocess.run(
        [sys.executable, "-c", USER, str(best.parent / "raw.npy")],
        cwd=best, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    truth = bunch.target[samples]
    for values in (answer["values"], answer["onnx"]):
        assert np.mean(np.abs(np.array(values) - truth)) == pytest.approx(recorded["test_mae"], rel=1e-4)


def test_an_unsupported_task_exits_2_before_any_work(tmp_path: Path, capsys):
    out = tmp_path / "never"
    code = main(["search", "segment the image into roads and cars", "--data", "digits", "--out", str(out)])
    assert code == 2 and not out.exists()
    assert "segmentation" in capsys.readouterr().err
