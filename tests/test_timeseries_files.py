"""UCR/UEA time-series files load with --data (issue 28, point 6): sktime's .ts and Weka's .arff,
univariate and multivariate, '?' for missing values; every malformed file is one actionable line.
The files are written here, the same series in both formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmnas import search
from llmnas.task.datasets import DatasetError, load_dataset

CLASSES = ("down", "flat", "up")


def series(n: int = 45, dims: int = 1, length: int = 20) -> tuple[np.ndarray, list[str]]:
    """Trends by class plus noise, a few values missing (NaN)."""
    rng = np.random.default_rng(3)
    t = np.linspace(-1, 1, length)
    labels = [CLASSES[i % 3] for i in range(n)]
    x = np.stack(
        [[(i % 3 - 1) * (d + 1) * t + rng.normal(0, 0.3, length) for d in range(dims)] for i in range(n)]
    )
    x = x.round(4)
    x[5, 0, 3] = x[17, -1, 0] = x[30, 0, -1] = np.nan
    return x, labels


def _cells(values: np.ndarray) -> str:
    return ",".join("?" if np.isnan(v) else repr(float(v)) for v in values)


def write_ts(path: Path, x: np.ndarray, labels: list[str], *, header: str = "") -> Path:
    univariate = x.shape[1] == 1
    lines = [
        "# written by the test",
        "@problemName Trends",
        "@timeStamps false",
        "@missing true",
        f"@univariate {str(univariate).lower()}",
        *([] if univariate else [f"@dimensions {x.shape[1]}"]),
        "@equalLength true",
        f"@seriesLength {x.shape[2]}",
        f"@classLabel true {' '.join(CLASSES)}",
        header,
        "@data",
    ]
    lines += [
        ":".join(_cells(d) for d in sample) + f":{label}" for sample, label in zip(x, labels, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_arff(path: Path, x: np.ndarray, labels: list[str]) -> Path:
    lines = ["% written by the test", "@relation Trends", ""]
    if x.shape[1] == 1:
        lines += [f"@attribute att{i} numeric" for i in range(x.shape[2])]
    else:
        lines += ["@attribute relationalAtt relational"]
        lines += [f"  @attribute t{i} numeric" for i in range(x.shape[2])]
        lines += ["@end relationalAtt"]
    lines += [f"@attribute target {{{','.join(CLASSES)}}}", "", "@data"]
    for sample, label in zip(x, labels, strict=True):
        if x.shape[1] == 1:
            lines.append(f"{_cells(sample[0])},{label}")
        else:
            lines.append("'" + "\\n".join(_cells(d) for d in sample) + f"',{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("dims", [1, 3])
def test_ts_and_arff_load_the_same_sequences(tmp_path: Path, dims: int):
    x, labels = series(dims=dims)
    ts = load_dataset(str(write_ts(tmp_path / "t.ts", x, labels)), seed=0)
    arff = load_dataset(str(write_arff(tmp_path / "t.arff", x, labels)), seed=0)
    assert (ts.modality, ts.input_shape, ts.class_names) == ("sequence", (dims, 20), CLASSES)
    assert ts.preprocessing.sample_shape == ((20,) if dims == 1 else (dims, 20))
    for name in ("x_train", "y_train", "x_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ts, name), getattr(arff, name))
    assert np.isfinite(ts.x_train).all() and np.isfinite(ts.x_test).all()  # '?' filled
    assert len(ts.preprocessing.fill) == dims * 20
    test = np.array(ts.test_samples)
    np.testing.assert_allclose(ts.x_test[~np.isnan(x[test]).any(axis=(1, 2))],
                               x[test][~np.isnan(x[test]).any(axis=(1, 2))], rtol=1e-6)  # fmt: skip


def test_a_ts_regression_target(tmp_path: Path):
    x, _ = series()
    targets = [f"{v:.2f}" for v in np.linspace(0.5, 9.5, len(x))]
    path = write_ts(tmp_path / "r.ts", x, targets)
    text = path.read_text().replace(
        f"@classLabel true {' '.join(CLASSES)}", "@classLabel false\n@targetLabel true"
    )
    path.write_text(text)
    data = load_dataset(str(path), seed=0)
    assert data.task == "regression" and data.input_shape == (1, 20)


@pytest.mark.parametrize(
    ("suffix", "edit", "match"),
    [
        (".ts", lambda t: t.replace("@timeStamps false", "@timeStamps true"), "timestamped .ts files"),
        (".ts", lambda t: t.replace("@classLabel true down flat up", "@classLabel false"), "no class labels"),
        (".ts", lambda t: t.replace(":up\n", ":sideways\n", 1), "label 'sideways' is not among"),
        (".ts", lambda t: t + "1.0,2.0:up\n", r"line 56 has 1 dimension\(s\) of lengths \[2\]; the first .* 20"),
        (".ts", lambda t: t + "1.0,two:up\n", "line 56: 'two' is not a number"),
        (".ts", lambda t: t.split("@data")[0], "no @data section"),
        (".arff", lambda t: t.replace("@attribute att3 numeric", "@attribute att3 string"), "'att3' of type 'string'"),
        (".arff", lambda t: t.replace("\n@data\n", "\n@data\n{0 1.0, 20 up}\n"), "sparse ARFF"),
        (".arff", lambda t: t.replace(",up\n", ",up,extra\n", 1), "the header declares 21"),
    ],
)  # fmt: skip
def test_malformed_files_are_one_line_errors(tmp_path: Path, suffix: str, edit, match: str):
    x, labels = series()
    write = write_ts if suffix == ".ts" else write_arff
    path = write(tmp_path / f"bad{suffix}", x, labels)
    path.write_text(edit(path.read_text()))
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(str(path), seed=0)
    assert "\n" not in str(info.value) and str(info.value).startswith("--data")


USER = r"""
import json, sys
import numpy as np, onnxruntime
from model import load

x = np.load(sys.argv[1], allow_pickle=False)
session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
model = load(trust_code=True)
onnx = session.run(None, {"input": x.astype(np.float32)})[0]
print(json.dumps({"pred": model.predict(x).tolist(), "onnx": np.asarray(model.classes)[onnx.argmax(1)].tolist()}))
"""


@pytest.mark.sandbox
def test_a_ts_file_searched_and_exported_predicts_raw_series_with_missing_values(tmp_path: Path):
    x, labels = series(n=60)
    path = write_ts(tmp_path / "trends.ts", x, labels)
    result = search("classify these time series", data=str(path), budget=1, seed=0, steps=40, workers=1,
                    out=tmp_path / "run")  # fmt: skip
    best = result.run_dir / "best"
    assert (best / "model.onnx").is_file(), "the ONNX check (NaN filled in the graph) must pass"
    samples = json.loads((best / "data.json").read_text())["test_samples"]
    raw = x[samples][:, 0]  # univariate: (N, L), NaN where the file has '?'
    np.save(tmp_path / "raw.npy", raw, allow_pickle=False)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMNAS_TRUST_CODE")}
    done = subprocess.run([sys.executable, "-c", USER, str(tmp_path / "raw.npy")], cwd=best, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    truth = [labels[i] for i in samples]
    for way in ("pred", "onnx"):
        assert np.mean(np.array(answer[way]) == np.array(truth)) == result.best_test_acc, way
