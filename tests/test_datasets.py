"""Tests for driver-side data loading: builtins, file formats, splits, worker files and every error path."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import random
import stat
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmnas.task.datasets import BUILTIN, Dataset, DatasetError, load_dataset


def row_hashes(x: np.ndarray) -> set[str]:
    return {hashlib.sha1(row.tobytes()).hexdigest() for row in x}


def assert_well_formed(data: Dataset) -> None:
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape[1:] == data.input_shape and len(x) == len(y) > 0
        assert y.min() >= 0 and y.max() < data.num_classes
    assert len(data.class_names) == data.num_classes
    train, val, test = (row_hashes(x) for x in (data.x_train, data.x_val, data.x_test))
    assert len(train) == len(data.x_train)
    assert not train & val and not train & test and not val & test


def same(a: Dataset, b: Dataset) -> bool:
    names = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in names)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Dataset, list[str]]:
    folder = tmp_path_factory.mktemp("cwd")
    before = os.getcwd()
    os.chdir(folder)
    try:
        data = load_dataset("mnist1d", seed=0)
    finally:
        os.chdir(before)
    return data, os.listdir(folder)


# ---------------------------------------------------------------------------------------------- builtins


def test_builtin_names() -> None:
    assert BUILTIN == ("digits", "mnist1d", "diabetes")


def test_digits(digits: Dataset) -> None:
    assert_well_formed(digits)
    assert (digits.modality, digits.input_shape, digits.num_classes) == ("image", (1, 8, 8), 10)
    assert digits.class_names == tuple(str(i) for i in range(10))
    assert len(digits.y_train) + len(digits.y_val) + len(digits.y_test) == 1797
    assert digits.x_train.min() >= 0.0 and digits.x_train.max() <= 1.0
    assert len(digits.y_val) == pytest.approx(0.15 * 1797, abs=10)
    for y in (digits.y_train, digits.y_val, digits.y_test):  # stratified: every class in every split
        assert set(y.tolist()) == set(range(10))


def test_digits_is_deterministic_by_seed(digits: Dataset) -> None:
    assert same(digits, load_dataset("digits", seed=0))
    assert not same(digits, load_dataset("digits", seed=1))


@pytest.mark.parametrize("shipped_file", [True, False], ids=["file read directly", "through load_digits"])
def test_digits_are_scikit_learns_digits_either_way(
    shipped_file: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.datasets import load_digits

    from llmnas.task import builtins

    if not shipped_file:  # a scikit-learn that keeps the file elsewhere
        monkeypatch.setattr(builtins.importlib.util, "find_spec", lambda name: None)
    raw, bunch = builtins.digits(), load_digits()
    assert np.array_equal(raw.x, bunch.images) and raw.x.dtype == bunch.images.dtype
    assert np.array_equal(raw.y, bunch.target) and list(raw.names) == list(bunch.target_names)


def test_digits_load_without_importing_scikit_learn() -> None:
    code = "import sys; from llmnas.task.builtins import digits; digits(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_mnist1d(mnist1d: tuple[Dataset, list[str]]) -> None:
    data, created = mnist1d
    assert created == []  # never the download/pickle path
    assert_well_formed(data)
    assert (data.modality, data.input_shape, data.num_classes) == ("sequence", (1, 40), 10)
    assert len(data.y_test) == 1000  # its own test split
    assert len(data.y_train) + len(data.y_val) == 4000


def test_mnist1d_is_deterministic_and_leaves_global_rng_alone(mnist1d: tuple[Dataset, list[str]]) -> None:
    np.random.seed(123)
    random.seed(123)
    expected = np.random.rand(), random.random()
    np.random.seed(123)
    random.seed(123)
    again = load_dataset("mnist1d", seed=0)
    assert (np.random.rand(), random.random()) == expected
    assert same(mnist1d[0], again)
    assert not same(again, load_dataset("mnist1d", seed=1, max_samples=1000))


def test_max_samples_is_stratified(digits: Dataset) -> None:
    small = load_dataset("digits", seed=0, max_samples=100)
    assert_well_formed(small)
    assert len(small.y_train) + len(small.y_val) + len(small.y_test) == 100
    assert np.bincount(small.y_train, minlength=10).min() >= 5
    tiny = load_dataset("mnist1d", seed=0, max_samples=200)
    assert_well_formed(tiny)
    assert len(tiny.y_train) + len(tiny.y_val) + len(tiny.y_test) == 200
    assert set(tiny.y_test.tolist()) == set(range(10))


def test_builtin_name_is_case_insensitive() -> None:
    assert load_dataset("Digits", seed=0, max_samples=100).input_shape == (1, 8, 8)


# ------------------------------------------------------------------------------------------ file formats


def save_npz(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def balanced_labels(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


def test_npz_tabular_is_standardised_with_train_stats(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, size=(90, 4))
    data = load_dataset(save_npz(tmp_path / "t.npz", X=x, y=balanced_labels(90)), seed=0)
    assert_well_formed(data)
    assert (data.modality, data.input_shape, data.num_classes) == ("tabular", (4,), 3)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-4)
    assert abs(data.x_val.mean()) < 1.5  # same transform, not re-fitted to val


@pytest.mark.parametrize(
    ("shape", "modality", "input_shape"),
    [
        ((60, 2, 16), "sequence", (2, 16)),
        ((60, 6, 6), "image", (1, 6, 6)),
        ((60, 3, 5, 7), "image", (3, 5, 7)),
        ((60, 5, 7, 3), "image", (3, 5, 7)),  # channels-last
    ],
)
def test_npz_shapes(
    tmp_path: Path, shape: tuple[int, ...], modality: str, input_shape: tuple[int, ...]
) -> None:
    x = np.random.default_rng(0).random(shape)
    data = load_dataset(save_npz(tmp_path / "d.npz", x=x, Y=balanced_labels(60)), seed=0)
    assert_well_formed(data)
    assert (data.modality, data.input_shape) == (modality, input_shape)


def test_npz_modality_override_and_uint8_scaling(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((60, 30))
    path = save_npz(tmp_path / "s.npz", X=x, y=balanced_labels(60), modality=np.array("sequence"))
    assert load_dataset(path, seed=0).input_shape == (1, 30)
    pixels = np.random.default_rng(0).integers(0, 256, size=(60, 8, 8), dtype=np.uint8)
    data = load_dataset(save_npz(tmp_path / "u.npz", X=pixels, y=balanced_labels(60)), seed=0)
    assert data.x_train.max() <= 1.0 and data.x_train.max() > 0.9


def test_npz_string_labels_are_sorted_names(tmp_path: Path) -> None:
    y = np.array(["zebra", "ant", "moose"] * 20)
    data = load_dataset(save_npz(tmp_path / "s.npz", X=np.random.rand(60, 3), y=y), seed=0)
    assert data.class_names == ("ant", "moose", "zebra")
    assert data.num_classes == 3


def test_npz_integer_labels_with_gaps_are_remapped(tmp_path: Path) -> None:
    y = np.array([3, 7, 10] * 20)
    data = load_dataset(save_npz(tmp_path / "g.npz", X=np.random.rand(60, 3), y=y.astype(float)), seed=0)
    assert data.class_names == ("3", "7", "10")
    assert set(data.y_train.tolist()) == {0, 1, 2}


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def csv_text(n: int = 30, label: str = "label") -> str:
    rows = [f"a,b,{label}"] + [f"{i},{i % 5 * 0.5},{['cat', 'dog', 'eel'][i % 3]}" for i in range(n)]
    return "\n".join(rows) + "\n"


def test_csv_round_trip(tmp_path: Path) -> None:
    data = load_dataset(write_csv(tmp_path / "d.csv", csv_text()), seed=0)
    assert_well_formed(data)
    assert (data.modality, data.input_shape, data.class_names) == ("tabular", (2,), ("cat", "dog", "eel"))
    other = load_dataset(write_csv(tmp_path / "o.csv", csv_text(label="kind")), seed=0, label_column="kind")
    assert same(data, other)


def make_png(path: Path, size: tuple[int, int], mode: str = "L", value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 40)
    Image.new(mode, size, color).save(path)


def make_image_folder(root: Path, mode: str = "L") -> str:
    for c, name in enumerate(("circle", "square")):
        for i in range(10):  # 2 per class in validation and in test
            size = (6, 5) if i else (9, 9)  # one odd size: resized to the most common one
            make_png(root / name / f"{i}.png", size, mode, value=10 * i + 100 * c)
    (root / "circle" / "notes.txt").write_text("not an image")
    return str(root)


def test_image_folder_grayscale(tmp_path: Path) -> None:
    data = load_dataset(make_image_folder(tmp_path / "imgs"), seed=0)
    assert_well_formed(data)
    assert (data.modality, data.input_shape, data.class_names) == ("image", (1, 5, 6), ("circle", "square"))
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0


def test_image_folder_rgb(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs")
    make_png(Path(root) / "square" / "color.png", (6, 5), "RGB")
    assert load_dataset(root, seed=0).input_shape == (3, 5, 6)


# ------------------------------------------------------------------------------------------ worker files


def test_write_worker_files_never_writes_val_or_test_labels(digits: Dataset, tmp_path: Path) -> None:
    folder = tmp_path / "job"
    digits.write_worker_files(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "test_x.npy",
        "train_x.npy",
        "train_y.npy",
        "val_x.npy",
    ]
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    loaded = {}
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        loaded[path.stem] = np.load(path, allow_pickle=False)
    np.testing.assert_array_equal(loaded["train_x"], digits.x_train)
    np.testing.assert_array_equal(loaded["train_y"], digits.y_train)
    np.testing.assert_array_equal(loaded["val_x"], digits.x_val)
    np.testing.assert_array_equal(loaded["test_x"], digits.x_test)
    assert loaded["val_x"].shape[0] == len(digits.y_val) and loaded["test_x"].dtype == np.float32


# ---------------------------------------------------------------------------------------------- errors


def raises(match: str, spec: str, **kwargs: object) -> str:
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset(spec, seed=0, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    raises(r"--data: no such file or folder: .*nope\.csv", str(tmp_path / "nope.csv"))


def test_unknown_builtin_lists_builtins_and_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = raises("unknown dataset 'cifar'", "cifar")
    for word in ("digits", "mnist1d", ".npz", ".csv", "folder", "torchvision:NAME"):
        assert word in message


def test_unsupported_suffix(tmp_path: Path) -> None:
    raises(r"unsupported file type '\.txt'", write_csv(tmp_path / "d.txt", "x"))


def test_csv_errors(tmp_path: Path) -> None:
    raises(
        "line 3 has 2 fields but the header has 3", write_csv(tmp_path / "r.csv", "a,b,label\n1,2,x\n1,2\n")
    )
    message = raises("--label-column", write_csv(tmp_path / "n.csv", csv_text(label="kind")))
    assert "a, b, kind" in message
    raises("no column 'nope'", write_csv(tmp_path / "n2.csv", csv_text()), label_column="nope")
    text = csv_text().replace("\n3,", "\nthree,", 1)  # a typo in a number column, not a category column
    raises(r"column 'a' holds numbers but line 5 has 'three'", write_csv(tmp_path / "s.csv", text))
    text = csv_text().replace("\n4,", "\nnan,", 1).replace("\n5,", "\n,", 1).replace("\n6,", "\ninf,", 1)
    raises(r"column 'a' has 1 inf values \(first at line 8\)", write_csv(tmp_path / "f.csv", text))
    raises("empty", write_csv(tmp_path / "e.csv", "a,b,label\n"))
    raises("no feature columns", write_csv(tmp_path / "l.csv", "label\nx\ny\n"))
    raises(
        "1 empty or missing labels .* line 2",
        write_csv(tmp_path / "m.csv", csv_text().replace(",cat\n", ",\n", 1)),
    )


@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.ones((0, 3)), np.zeros(0), "holds no samples"),
        (np.ones((60, 3)), np.zeros(60), "only one class"),
        (np.ones((60, 3)), np.arange(60) % 3 - 1, "20 negative labels"),
        (np.ones((60, 3)), np.array([1e300, 1.0, 2.0] * 20), "out of range"),
        (
            np.ones((60, 3)),
            np.array([np.nan, 1.0, 2.0] * 20),
            "20 NaN/inf targets",
        ),  # not whole numbers: a regression target
        (np.ones((60, 3)), np.ones((60, 2)), "labels must be 1-D"),
        (np.ones((60, 3)), np.arange(59) % 3, "X has 60 samples but y has 59"),
        (np.ones(60), np.arange(60) % 3, r"X has shape \(60,\)"),
        (np.ones((60, 1, 1, 1, 1)), np.arange(60) % 3, r"X has shape \(60, 1, 1, 1, 1\)"),
        (np.array([["a"]] * 60), np.arange(60) % 3, "X must be numeric"),
        (
            np.where(np.arange(180).reshape(60, 3) == 7, np.inf, 0.0),
            np.arange(60) % 3,
            r"0 NaN.*1 inf.*sample 2",
        ),
        (
            np.ones((60, 3)),
            np.array([0] * 58 + [1, 1]),
            "class '1' has 2 samples; each class needs at least 3",
        ),
    ],
)
def test_npz_errors(tmp_path: Path, x: np.ndarray, y: np.ndarray, match: str) -> None:
    raises(match, save_npz(tmp_path / "bad.npz", X=x, y=y))


def test_npz_structure_errors(tmp_path: Path) -> None:
    raises(r"needs arrays 'X' and 'y'; found \['data'\]", save_npz(tmp_path / "k.npz", data=np.ones(3)))
    objects = np.array([{"a": 1}] * 60, dtype=object)
    np.savez(tmp_path / "o.npz", X=np.ones((60, 2)), y=objects)
    raises("object arrays", str(tmp_path / "o.npz"))
    (tmp_path / "c.npz").write_bytes(b"not a zip")
    raises("c.npz", str(tmp_path / "c.npz"))
    path = save_npz(tmp_path / "m.npz", X=np.ones((60, 3)), y=balanced_labels(60), modality=np.array("audio"))
    raises("'modality' must be one of", path)


def test_option_errors(tmp_path: Path) -> None:
    raises("--val-fraction", "digits", val_fraction=0.6, test_fraction=0.5)
    raises("--max-samples 20 is too small: 10 classes need at least 30", "digits", max_samples=20)


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    raises("no class sub-folders", str(tmp_path / "empty"))
    make_png(tmp_path / "one" / "a" / "0.png", (4, 4))
    (tmp_path / "one" / "b").mkdir()
    raises(r"class folder .*b holds no images", str(tmp_path / "one"))
    root = Path(make_image_folder(tmp_path / "broken"))
    (root / "square" / "bad.png").write_bytes(b"garbage")
    raises(r"cannot read image .*square/bad\.png", str(root))


# ------------------------------------------------------------------------------------------- torchvision


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_torchvision_missing_gives_install_hint() -> None:
    raises("pip install torchvision", "torchvision:cifar10", data_root="/nonexistent")


class FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10: channels-last uint8 data, `download=False` only."""

    classes = ["cat", "dog"]

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        assert download is False
        if not (Path(root) / "cifar-10-batches-py").is_dir():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        n = 40 if train else 10
        self.data = np.random.default_rng(n).integers(0, 256, size=(n, 4, 4, 3), dtype=np.uint8)
        self.targets = [i % 2 for i in range(n)]


@pytest.fixture
def fake_torchvision(monkeypatch: pytest.MonkeyPatch) -> None:
    package, datasets = types.ModuleType("torchvision"), types.ModuleType("torchvision.datasets")
    datasets.CIFAR10 = FakeCIFAR10  # type: ignore[attr-defined]
    package.datasets = datasets  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", datasets)


@pytest.mark.usefixtures("fake_torchvision")
def test_torchvision_loads_from_data_root(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    data = load_dataset("torchvision:CIFAR-10", seed=0, data_root=str(tmp_path))
    assert_well_formed(data)
    assert (data.input_shape, data.class_names, len(data.y_test)) == ((3, 4, 4), ("cat", "dog"), 10)
    assert data.x_train.max() <= 1.0


@pytest.mark.usefixtures("fake_torchvision")
def test_torchvision_errors(tmp_path: Path) -> None:
    message = raises(
        "--data-root: torchvision:cifar10 not found in", "torchvision:cifar10", data_root=str(tmp_path)
    )
    assert "download=True" in message
    raises("--data-root is required", "torchvision:cifar10")
    raises("torchvision has no dataset 'imagenet42'", "torchvision:imagenet42", data_root=str(tmp_path))
