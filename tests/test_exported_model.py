"""The exported model takes the data as its user has it (issue 17, points 1 and 2).

For each kind of source a tiny real search runs; then, in a fresh interpreter inside best/, as a user
types it: ``from model import load`` predicts the test split from the raw source (digits 0-16, a CSV
file with string labels, PNG files, uint8 channels-last arrays with gapped integer labels), and
``model.onnx`` does the same with onnxruntime, the preprocessing inside the graph. Both must give the
sandbox's own test predictions, sample by sample, and so the run's recorded test accuracy.
"""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_model
from sklearn.datasets import load_digits, load_iris

from llmnas import search
from llmnas.candidate import checks
from llmnas.propose import space
from llmnas.results.export import DATA_FILE, export_candidate
from llmnas.runs.layout import CODE
from llmnas.task import preprocess
from llmnas.task.datasets import load_dataset
from sandbox.protocol import WEIGHTS_FILE

# Runs in best/ with only that folder importable from llmnas's side: `from model import load`.
USER = r"""
import json, sys
import numpy as np
import onnxruntime
import preprocess
import torch
from model import load

kind, raw = json.loads(sys.argv[1])
if kind == "npy":
    raw = np.load(raw, allow_pickle=False)
model = load(trust_code=True)  # the offline search's own template code
pred = model.predict(raw)
proba = model.predict_proba(raw)
# The ONNX way, running no code of the search: preprocess.py reads files, the graph does the rest.
with open("data.json") as f:
    pre = preprocess.Preprocessing.from_json(json.load(f)["preprocessing"])
x = np.asarray(preprocess.raw_inputs(pre, raw), np.float32)
session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
logits = session.run(None, {"input": x})[0]
print(json.dumps({
    "pred": pred.tolist(),
    "proba_rows": proba.sum(axis=1).tolist(),
    "proba_pred": np.asarray(model.classes)[proba.argmax(axis=1)].tolist(),
    "onnx_pred": np.asarray(model.classes)[logits.argmax(axis=1)].tolist(),
    "module": isinstance(model.module, torch.nn.Module),
}))
"""


def _digits_source(folder: Path) -> tuple[str, dict]:
    """sklearn's digits as they come: pixel values 0-16, shaped (N, 8, 8)."""
    bunch = load_digits()
    return "digits", {"raw": bunch.images, "labels": bunch.target.tolist(), "max_samples": 300}


def _csv_source(folder: Path) -> tuple[str, dict]:
    """Iris, unscaled, species as strings, the label column between the features."""
    iris = load_iris()
    columns = ["petal width", "species", "sepal length", "sepal width", "petal length"]
    order = [3, None, 0, 1, 2]
    path = folder / "iris.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row, target in zip(iris.data, iris.target, strict=True):
            writer.writerow([iris.target_names[target] if j is None else row[j] for j in order])
    labels = {i: str(iris.target_names[t]) for i, t in enumerate(iris.target)}  # by 0-based data row
    return str(path), {"csv": path, "labels": labels, "label_column": "species"}


def _image_source(folder: Path) -> tuple[str, dict]:
    """PNG files, RGB, one sub-folder per class; a few of another size (resized at training)."""
    rng = np.random.default_rng(0)
    root = folder / "shapes"
    labels = {}
    for c, name in enumerate(("bar", "dot", "ring")):
        (root / name).mkdir(parents=True)
        for i in range(24):
            size = (16, 14) if i % 8 == 0 else (12, 10)
            pixels = rng.integers(0, 60, size=(size[1], size[0], 3), dtype=np.uint8)
            img = Image.fromarray(pixels)
            draw, (w, h) = ImageDraw.Draw(img), size
            color = (200 + 20 * c, 80 * c, 250 - 90 * c)
            if name == "bar":
                draw.rectangle([w // 3, 1, w // 3 + 2, h - 2], fill=color)
            elif name == "dot":
                draw.ellipse([w // 3, h // 3, w // 3 + 3, h // 3 + 3], fill=color)
            else:
                draw.ellipse([1, 1, w - 2, h - 2], outline=color, width=2)
            img.save(root / name / f"{i:02d}.png")
            labels[f"{name}/{i:02d}.png"] = name
    return str(root), {"root": root, "labels": labels}


def _npz_source(folder: Path) -> tuple[str, dict]:
    """uint8 pixels, channels-last (N, 8, 8, 3), integer labels with gaps."""
    bunch = load_digits()
    x = np.repeat((bunch.images * 15).astype(np.uint8)[..., None], 3, axis=-1)
    x[..., 1] //= 2
    y = bunch.target * 3 + 1
    path = folder / "pixels.npz"
    np.savez(path, X=x, y=y)
    return str(path), {"raw": x, "labels": y.tolist(), "max_samples": 300}


SOURCES = {"digits": _digits_source, "csv": _csv_source, "images": _image_source, "npz": _npz_source}


def _user_inputs(source: dict, samples: list, folder: Path) -> list:
    """The test split as its owner has it, as USER's argument."""
    if "raw" in source:
        np.save(folder / "raw.npy", source["raw"][samples], allow_pickle=False)
        return ["npy", str(folder / "raw.npy")]
    if "csv" in source:
        return ["csv", str(source["csv"])]  # the whole file: the test lines are picked afterwards
    return ["files", [str(source["root"] / s) for s in samples]]


@pytest.mark.sandbox
@pytest.mark.parametrize("kind", list(SOURCES))
def test_exported_model_takes_raw_data_and_reproduces_the_test_accuracy(kind, tmp_path):
    data, source = SOURCES[kind](tmp_path)
    settings = {k: source[k] for k in ("max_samples", "label_column") if k in source}
    result = search(
        "classify these samples", data=data, budget=1, seed=0, steps=60, workers=1,
        out=tmp_path / "run", **settings,
    )  # fmt: skip
    best, recorded = result.run_dir / "best", result.best_test_acc
    described = json.loads((best / DATA_FILE).read_text())
    samples = described["test_samples"]
    expected = described["preprocessing"]["classes"]
    sandbox = np.load(result.run_dir / "candidates" / result.best.candidate_id / "test_pred.npy")
    sandbox_labels = [expected[i] for i in sandbox.argmax(axis=1)]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMNAS_TRUST_CODE")}
    done = subprocess.run(
        [sys.executable, "-c", USER, json.dumps(_user_inputs(source, samples, tmp_path))],
        cwd=best, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    pred, onnx_pred, proba_pred = answer["pred"], answer["onnx_pred"], answer["proba_pred"]
    if kind == "csv":  # the whole file was predicted: pick the test split's rows
        pred, onnx_pred, proba_pred = ([p[row] for row in samples] for p in (pred, onnx_pred, proba_pred))
    truth = [source["labels"][s] for s in samples]

    assert pred == sandbox_labels and onnx_pred == sandbox_labels and proba_pred == sandbox_labels
    assert np.mean(np.array(pred) == np.array(truth)) == recorded
    assert np.mean(np.array(onnx_pred) == np.array(truth)) == recorded
    assert {type(p) for p in pred} == {type(t) for t in truth}  # labels as in the data: str or int
    assert np.allclose(answer["proba_rows"], 1.0) and answer["module"] is True
    assert "preprocessing in the graph" in (best / "README.md").read_text()
    if kind == "csv":  # standardisation fitted on the training split, not identity
        assert (
            described["preprocessing"]["mean"][1] > 4
            and described["preprocessing"]["columns"][0] == "petal width"
        )


def test_preprocess_py_needs_no_llmnas():
    """Copied unchanged into every bundle: numpy, Pillow and the standard library only."""
    tree = ast.parse(Path(preprocess.__file__).read_text())
    imported = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert imported <= {"__future__", "csv", "dataclasses", "math", "os", "numpy", "PIL"}, imported


def test_a_model_without_classes_predicts_its_outputs(tmp_path):
    """What a regression export will be: no classes, so predict() is the network's output."""
    data = load_dataset("digits", seed=0, max_samples=100)
    code = space.render("image", space.sample_uniform("image", np.random.default_rng(0)))
    run, cid = tmp_path / "run", checks.candidate_id(checks.normalise(code))
    (run / "candidates" / cid).mkdir(parents=True)
    (run / "candidates" / cid / CODE).write_text(checks.normalise(code))
    namespace: dict = {"__name__": "template"}
    exec(compile(code, "template", "exec"), namespace)  # llmnas's own template
    save_model(namespace["build_model"]((1, 8, 8), 10), str(run / "candidates" / cid / WEIGHTS_FILE))
    export_candidate(run, cid, tmp_path / "out", input_shape=(1, 8, 8), num_classes=10, metrics={}, data=data)
    described = json.loads((tmp_path / "out" / DATA_FILE).read_text())
    described["preprocessing"]["classes"] = None
    (tmp_path / "out" / DATA_FILE).write_text(json.dumps(described))
    spec = importlib.util.spec_from_file_location("exported_regression", tmp_path / "out" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.load(trust_code=True)
    raw = load_digits().images[:5]
    with torch.no_grad():
        direct = model.module(torch.from_numpy((raw / 16).astype(np.float32)[:, None])).numpy()
    np.testing.assert_array_equal(model.predict(raw), direct)
    with pytest.raises(ValueError, match="no classes"):
        model.predict_proba(raw)


class FakeFrame:
    """What raw_inputs uses of a pandas DataFrame: ``columns`` and selecting a list of them."""

    def __init__(self, columns: dict[str, list[float]]):
        self.columns, self.data = list(columns), columns

    def __getitem__(self, names: list[str]) -> np.ndarray:
        return np.column_stack([self.data[n] for n in names])


def test_raw_forms_of_a_table_and_of_samples(tmp_path):
    table = preprocess.Preprocessing("tabular", (2,), mean=(1.0, 10.0), std=(2.0, 5.0), columns=("a", "b"))
    (tmp_path / "t.csv").write_text("b,label,a\n20,x,3\n10,y,1\n")
    from_csv = preprocess.apply(table, preprocess.raw_inputs(table, tmp_path / "t.csv"))
    np.testing.assert_array_equal(from_csv, [[1.0, 2.0], [0.0, 0.0]])
    frame = FakeFrame({"b": [20.0, 10.0], "label": [0, 1], "a": [3.0, 1.0]})
    np.testing.assert_array_equal(preprocess.apply(table, preprocess.raw_inputs(table, frame)), from_csv)
    with pytest.raises(ValueError, match="has no column 'a'"):
        preprocess.raw_inputs(table, _write(tmp_path / "u.csv", "b,c\n1,2\n"))
    image = preprocess.Preprocessing("image", (4, 4, 3), channels_last=True, divide=255.0)
    pixels = np.arange(96, dtype=np.uint8).reshape(2, 4, 4, 3)
    x = preprocess.apply(image, pixels)
    assert x.shape == (2, 3, 4, 4) and x[1, 2, 0, 1] == np.float32(pixels[1, 0, 1, 2]) / np.float32(255)
    np.testing.assert_array_equal(preprocess.apply(image, pixels[0]), x[:1])  # one sample
    np.testing.assert_array_equal(preprocess.apply(image, pixels.reshape(2, -1)), x)  # flat rows
    with pytest.raises(ValueError, match=r"expected \(N, 4, 4, 3\) raw samples"):
        preprocess.apply(image, pixels[:, :2])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


LAZY = """
import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Conv2d(input_shape[0], 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes))
"""


def test_a_model_with_lazy_layers_scores_and_exports(run_candidate, digits, tmp_path):
    """nn.LazyLinear takes its input width from the first forward pass: the scoring process and the
    export's load() give it that shape before the trained weights load into it."""
    code = checks.normalise(LAZY)
    run, cid = tmp_path / "run", checks.candidate_id(code)
    folder = run / "candidates" / cid
    result = run_candidate(code, folder)
    assert result.ok, result.message
    assert result.metrics.params == (4 * 9 + 4) + (4 * 64 * 10 + 10)
    (folder / CODE).write_text(code)
    export_candidate(
        run, cid, tmp_path / "out", input_shape=digits.input_shape, num_classes=10, metrics={}, data=digits
    )
    spec = importlib.util.spec_from_file_location("exported_lazy", tmp_path / "out" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.load(trust_code=True)
    with torch.no_grad():
        logits = model.module(torch.from_numpy(digits.x_test)).numpy()
    np.testing.assert_allclose(logits, np.load(folder / "test_pred.npy"), atol=1e-5)
