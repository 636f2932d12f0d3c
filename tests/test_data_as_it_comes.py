"""Data as users have it (issue 28, points 4, 5 and 6): a CSV with text columns and missing values goes
through the search and out of the export as it is; the words pick the modality of 2-D data, and the
rule is said when they don't; too little data is refused, not searched.

The CSV is penguins-like (species from island, measurements, sex, year), written here: deterministic,
no network.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmnas import run, search
from llmnas.cli import main
from llmnas.config import RunConfig
from llmnas.results.export import DATA_FILE
from llmnas.task import preprocess
from llmnas.task.datasets import DatasetError, load_data, load_dataset

COLUMNS = [
    "species",
    "island",
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
    "sex",
    "year",
]
SPECIES = ("Adelie", "Chinstrap", "Gentoo")


def penguins(path: Path, n: int = 120, row_id: bool = False) -> Path:
    """Species by row; islands and sizes overlap between species; NA, blanks and '?' scattered."""
    rng = np.random.default_rng(7)
    islands = ("Biscoe", "Dream", "Torgersen")
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS + (["row_id"] if row_id else []))
        for i in range(n):
            s = i % 3
            island = islands[s] if rng.random() < 0.7 else islands[rng.integers(3)]
            row = [
                SPECIES[s],
                island,
                f"{(39, 48, 47)[s] + rng.normal(0, 2):.1f}",
                f"{(18.3, 18.4, 15.0)[s] + rng.normal(0, 0.8):.1f}",
                f"{(190, 196, 217)[s] + rng.normal(0, 5):.0f}",
                f"{(3700, 3730, 5070)[s] + rng.normal(0, 300):.0f}",
                ("male", "female")[rng.integers(2)],
                2007 + i % 3,
            ]
            if i % 11 == 3:
                row[2] = "NA"
            if i % 13 == 5:
                row[6] = ""
            if i % 17 == 7:
                row[5] = "?"
            if i % 19 == 9:
                row[1] = "null"
            writer.writerow(row + ([i + 0.5] if row_id else []))
    return path


def rows_of(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))[1:]


# ------------------------------------------------------------------------------------------- loading


def test_text_columns_and_missing_values_are_fitted_on_the_training_split(tmp_path: Path):
    path = penguins(tmp_path / "penguins.csv", row_id=True)
    data = load_dataset(str(path), seed=0, label_column="species")
    pre, rows = data.preprocessing, rows_of(path)
    assert data.modality == "tabular" and data.class_names == SPECIES
    assert pre.columns == tuple(COLUMNS[1:]) + ("row_id",)
    assert [c is not None for c in pre.categories] == [True, False, False, False, False, True, False, False]
    assert data.input_shape == (3 + 4 + 2 + 1 + 1,)  # island and sex one-hot
    for x in (data.x_train, data.x_val, data.x_test):
        assert np.isfinite(x).all()
    # test_samples are 0-based data rows: their labels are the test labels
    assert [rows[i][0] for i in data.test_samples] == [SPECIES[c] for c in data.y_test]
    # the training rows: neither test nor validation (found by the row_id column)
    val = {int(v) for v in data.x_val_raw[:, -1]}
    train = [r for i, r in enumerate(rows) if i not in set(data.test_samples) | val]
    assert len(train) == len(data.y_train)
    islands = sorted({r[1] for r in train} - {"null"})
    assert pre.categories[0] == tuple(islands)
    bills = [float(r[2]) for r in train if r[2] != "NA"]
    assert pre.fill[1] == pytest.approx(float(np.median(np.float32(bills))), rel=1e-6)
    assert pre.fill[0] is None and pre.fill[5] is None  # a missing category is all zeros
    assert "NaN" not in json.dumps(pre.to_json())  # plain JSON: None where nothing is filled
    assert preprocess.Preprocessing.from_json(pre.to_json()) == pre


def test_apply_imputes_and_one_hot_encodes_as_fitted():
    pre = preprocess.Preprocessing(
        "tabular", (3,), columns=("colour", "size", "year"), categories=((), None, None)
    )
    cells = np.array([["red", "1.5", "2007"], ["blue", "NA", "2008"], ["red", "2.5", ""]], dtype=object)
    pre = preprocess.imputed(pre, cells)
    assert pre.categories == (("blue", "red"), None, None) and pre.fill == (None, 2.0, 2007.5)
    assert pre.input_shape == (4,)
    raw = preprocess.raw_inputs(
        pre, [["green", None, 2009], ["blue", "?", float("nan")], ["  red ", "3", "n/a"]]
    )
    np.testing.assert_array_equal(raw[:, 0], [np.nan, 0, 1])  # unseen: NaN, then all zeros
    x = preprocess.apply(pre, raw)
    np.testing.assert_array_equal(x, [[0, 0, 2.0, 2009], [1, 0, 2.0, 2007.5], [0, 1, 3.0, 2007.5]])
    np.testing.assert_array_equal(
        preprocess.apply(pre, preprocess.raw_inputs(pre, ["red", 3, 2007])), [[0, 1, 3, 2007]]
    )
    with pytest.raises(ValueError, match="column 'size' holds numbers, not 'big'"):
        preprocess.raw_inputs(pre, [["red", "big", 2007]])
    with pytest.raises(ValueError, match="the model reads 3 columns"):
        preprocess.raw_inputs(pre, [["red", 1.0]])


def test_a_dataframe_with_pandas_missing_values_reads_like_the_csv(tmp_path: Path):
    pd = pytest.importorskip("pandas")
    path = penguins(tmp_path / "penguins.csv", n=60)
    pre = load_dataset(str(path), seed=0, label_column="species").preprocessing
    frame = pd.read_csv(path)  # NA and blanks become NaN, the '?' column stays text
    frame.loc[0, "sex"] = pd.NA
    from_csv, from_frame = preprocess.raw_inputs(pre, path), preprocess.raw_inputs(pre, frame)
    from_csv[0, pre.columns.index("sex")] = np.nan
    np.testing.assert_array_equal(from_frame, from_csv)
    with pytest.raises(ValueError, match="no column 'island'"):
        preprocess.raw_inputs(pre, frame.drop(columns=["island"]))


def test_mostly_text_columns_are_categories_a_stray_word_in_numbers_is_an_error(tmp_path: Path):
    path = tmp_path / "cabins.csv"
    path.write_text(
        "cabin,age,label\n" + "".join(f"{'B5' if i % 3 else '12'},{i},{i % 2}\n" for i in range(40))
    )
    data = load_dataset(str(path), seed=0)
    assert data.preprocessing.categories == (("12", "B5"), None)
    typo = tmp_path / "typo.csv"
    typo.write_text("age,label\n" + "".join(f"{'forty' if i == 5 else i},{i % 2}\n" for i in range(40)))
    with pytest.raises(DatasetError, match="column 'age' holds numbers but line 7 has 'forty'"):
        load_dataset(str(typo), seed=0)


# ------------------------------------------------------------------------------------ end to end: export

USER = r"""
import csv, json, sys
import numpy as np, onnxruntime, pandas, preprocess
from model import load

path = sys.argv[1]
model = load(trust_code=True)
with open(path, newline="") as f:
    rows = [r[1:] for r in list(csv.reader(f))[1:]]  # the raw cells, label dropped
rows = [[None if c == "" else c for c in r] for r in rows]  # blanks as None
with open("data.json") as f:
    pre = preprocess.Preprocessing.from_json(json.load(f)["preprocessing"])
session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
logits = session.run(None, {"input": np.asarray(preprocess.raw_inputs(pre, path), np.float32)})[0]
print(json.dumps({
    "file": model.predict(path).tolist(),
    "frame": model.predict(pandas.read_csv(path)).tolist(),
    "rows": model.predict(rows).tolist(),
    "onnx": np.asarray(model.classes)[logits.argmax(axis=1)].tolist(),
}))
"""


@pytest.mark.sandbox
def test_the_raw_penguins_csv_goes_through_search_export_and_onnx(tmp_path: Path):
    pytest.importorskip("pandas")
    path = penguins(tmp_path / "penguins.csv")
    result = search(
        "predict the penguin species from its measurements", data=str(path), label_column="species",
        budget=1, seed=0, steps=60, workers=1, out=tmp_path / "run",
    )  # fmt: skip
    best = result.run_dir / "best"
    assert (best / "model.onnx").is_file(), "the ONNX check (preprocessing in the graph) must pass"
    described = json.loads((best / DATA_FILE).read_text())
    samples = described["test_samples"]
    readme = (best / "README.md").read_text()
    assert (
        "one-hot encoded" in readme and "0-based data rows" in readme and "NaN for a missing value" in readme
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LLMNAS_TRUST_CODE")}
    done = subprocess.run(
        [sys.executable, "-c", USER, str(path)],
        cwd=best,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    rows = rows_of(path)
    truth = [rows[i][0] for i in samples]
    assert any({"NA", "", "?", "null"} & set(rows[i]) for i in samples)  # the graph fills some test rows
    sandbox = np.load(result.run_dir / "candidates" / result.best.candidate_id / "test_pred.npy").argmax(
        axis=1
    )
    for way in ("file", "frame", "rows", "onnx"):
        picked = [answer[way][i] for i in samples]
        assert picked == [SPECIES[c] for c in sandbox], way
        assert np.mean(np.array(picked) == np.array(truth)) == result.best_test_acc, way


# ------------------------------------------------------------------------------------------- modality


def test_2d_x_is_sequences_when_the_words_say_so_and_the_rule_is_said_otherwise(tmp_path: Path):
    x = np.random.default_rng(0).normal(size=(120, 30))
    path = tmp_path / "signals.npz"
    np.savez(path, X=x, y=np.arange(120) % 3)
    table = load_dataset(str(path), seed=0)
    assert (table.modality, table.input_shape) == ("tabular", (30,))
    assert any("2-D X (120, 30) read as tabular" in n and "time series" in n and "modality='sequence'" in n
               for n in table.notes)  # fmt: skip
    series = load_dataset(str(path), seed=0, modality="sequence")
    assert (series.modality, series.input_shape) == ("sequence", (1, 30)) and not series.notes
    cfg = RunConfig(requirements="classify these time series", data=str(path))
    assert load_data(cfg).input_shape == (1, 30)
    asked = load_dataset(str(path), seed=0, modality="image")
    assert asked.modality == "tabular" and any("ask for image data" in n for n in asked.notes)
    assert not load_dataset(str(path), seed=0, modality="tabular").notes
    square = tmp_path / "square.npz"
    np.savez(square, X=np.random.default_rng(0).normal(size=(120, 6, 6)), y=np.arange(120) % 3)
    assert any("read as images" in n for n in load_dataset(str(square), seed=0).notes)
    assert load_dataset(str(square), seed=0, modality="sequence").input_shape == (6, 6)


def test_a_csv_of_numbers_is_sequences_when_the_words_say_so(tmp_path: Path):
    path = tmp_path / "series.csv"
    values = np.random.default_rng(0).normal(size=(60, 24)).round(3)
    header = ",".join(f"t{i}" for i in range(24)) + ",label\n"
    path.write_text(header + "".join(",".join(map(str, v)) + f",{i % 3}\n" for i, v in enumerate(values)))
    table = load_dataset(str(path), seed=0)
    assert table.input_shape == (24,) and any("say 'time series'" in n for n in table.notes)
    series = load_dataset(str(path), seed=0, modality="sequence")
    assert (series.modality, series.input_shape) == ("sequence", (1, 24))


def test_a_run_says_the_notes_at_its_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "signals.npz"
    np.savez(path, X=np.random.default_rng(0).normal(size=(60, 30)), y=np.arange(60) % 3)

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(run, "make_spec", stop)  # stop right after the data is read
    lines: list[str] = []
    with pytest.raises(Stop):
        run.start(
            RunConfig(requirements="classify these", data=str(path)), tmp_path / "r", announce=lines.append
        )
    assert lines[0].startswith("Note: 2-D X (60, 30) read as tabular (N, F); say 'time series'")


# ------------------------------------------------------------------------------------- too little data


def test_six_rows_are_refused_naming_the_fractions(tmp_path: Path, capsys):
    path = tmp_path / "six.csv"
    path.write_text("a,b,label\n1,2,x\n2,3,x\n3,4,x\n4,5,y\n5,6,y\n6,7,y\n")
    out = tmp_path / "never"
    code = main(["search", "classify", "--data", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1
    assert "--val-fraction" in err and "--test-fraction" in err and "6 rows" in err and "at least 2" in err


def test_a_few_samples_per_class_is_a_note(tmp_path: Path):
    path = tmp_path / "few.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(40)))
    data = load_dataset(str(path), seed=0)
    assert any("has only 3 samples in the validation split" in n for n in data.notes)
    assert not load_dataset(
        str(path), seed=0, val_fraction=0.25, test_fraction=0.25, modality="tabular"
    ).notes
    with pytest.raises(DatasetError, match=r"raise --max-samples \(12\)"):
        load_dataset(str(path), seed=0, max_samples=12)
