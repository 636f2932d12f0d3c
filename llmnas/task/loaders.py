"""File-format loaders for `load_dataset`: .npz, .csv, image folders and torchvision datasets (UCR/UEA
time-series files: timeseries.py).

Each reads its source into an unsplit `Raw`: the samples as the source holds them and the
`Preprocessing` that makes network inputs of them, checking what it can name a line, column or file
for; `load_dataset` (datasets.py) validates the labels, splits and fits the preprocessing.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmnas.errors import UserError
from llmnas.task.preprocess import Preprocessing, as_number, decode_images, is_missing, read_csv

log = logging.getLogger(__name__)

MODALITIES = ("image", "sequence", "tabular")
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


class DatasetError(UserError):
    """A dataset problem found before the search starts; the message names the flag to fix."""


@dataclass(frozen=True)
class Raw:
    """Unsplit data as read from the source; `test` holds a split the source already defines, `ids`
    names each sample of `x` for people (default: its 0-based row index). `impute`: the source may
    hold missing values (NaN, or a table's missing cells), filled as `preprocess.imputed` fits them;
    `notes`: how the source was read, for the user (the rule that chose the modality)."""

    x: np.ndarray
    y: np.ndarray
    pre: Preprocessing
    names: Sequence | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None
    ids: Sequence[int | str] | None = None
    task: str | None = None  # the source says what its target is; None: the labels decide
    impute: bool = False
    notes: tuple[str, ...] = ()


def npz_file(path: Path, asked: str | None = None) -> Raw:
    """X and y; the modality stored in the file, else the one the requirements ask for (``asked``), else
    the shape's (with a note saying so)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as err:
        raise DatasetError(
            f"--data: {path} holds object arrays or is corrupt ({err}); save plain numeric/string arrays"
        ) from err
    except OSError as err:
        raise DatasetError(f"--data: cannot read {path} as .npz: {err}") from err
    x_key = next((k for k in ("X", "x") if k in arrays), None)
    y_key = next((k for k in ("y", "Y") if k in arrays), None)
    if x_key is None or y_key is None:
        raise DatasetError(f"--data: {path} needs arrays 'X' and 'y'; found {sorted(arrays) or 'none'}")
    x, y = arrays[x_key], arrays[y_key]
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"--data: {path}: X must be numeric, got dtype {x.dtype}")
    if x.ndim < 2 or x.ndim > 4:
        raise DatasetError(
            f"--data: {path}: X has shape {x.shape}; expected (N, F) tabular, (N, C, L) sequence, "
            "(N, H, W) or (N, C, H, W) image"
        )
    if len(x) != len(y):
        raise DatasetError(f"--data: {path}: X has {len(x)} samples but y has {len(y)}; they must match")
    _check_finite(x, lambda i: f"sample {i[0]}, position {tuple(int(j) for j in i[1:])}", f"{path}: X")
    if "modality" in arrays:
        modality, notes = _stored_modality(arrays["modality"], x, path), ()
    else:
        modality, notes = _shape_modality(x, asked)
    pre = _image(x) if modality == "image" else Preprocessing(modality, x.shape[1:])
    return Raw(x, y, pre, notes=notes)


SHAPES = {"tabular": (2,), "sequence": (2, 3), "image": (3, 4)}  # the ranks of X each modality takes


def _stored_modality(hint: np.ndarray, x: np.ndarray, path: Path) -> str:
    modality = str(hint.item() if hint.ndim == 0 else hint.ravel()[0]) if hint.size else ""
    if modality not in SHAPES:
        raise DatasetError(f"--data: {path}: 'modality' must be one of {MODALITIES}, got {modality!r}")
    if x.ndim not in SHAPES[modality]:
        raise DatasetError(f"--data: {path}: X of shape {x.shape} cannot be {modality} data")
    return modality


def _shape_modality(x: np.ndarray, asked: str | None) -> tuple[str, tuple[str, ...]]:
    """The modality the requirements ask for when X's rank allows it, else the shape rule's: 2-D
    tabular, 3-D (N, C, L) sequences unless square (N, H, W) images, 4-D images; when the words named
    none, a note says which rule read X and how to choose otherwise."""
    if asked is not None and x.ndim in SHAPES[asked]:
        return asked, ()
    square = x.ndim == 3 and x.shape[1] == x.shape[2]
    modality = {2: "tabular", 3: "image" if square else "sequence"}.get(x.ndim, "image")
    if asked is not None or x.ndim == 4:
        return modality, ()
    read, other = {
        "tabular": ("tabular (N, F)", "sequence"),
        "image": ("images (N, H, W), being square", "sequence"),
        "sequence": ("sequences (N, C, L)", "image"),
    }[modality]
    word = "time series" if other == "sequence" else "image"
    return modality, (
        f"{x.ndim}-D X {tuple(x.shape)} read as {read}; say '{word}' in the requirements or store "
        f"modality='{other}' in the .npz to search {other} models",
    )


def csv_file(path: Path, label_column: str | None, asked: str | None = None) -> Raw:
    """A header row and data rows; every column but the label is a feature: numbers (missing cells are
    filled), or text categories (one-hot, fitted on the training split). All-number rows are sequences
    when the requirements ask for them (``asked``), else tabular features (with a note)."""
    header, rows, lines = _csv_rows(path)
    target = header.index(_label_column(path, header, label_column))
    features = [j for j in range(len(header)) if j != target]
    if not features:
        raise DatasetError(f"--data: {path} has no feature columns besides the label {header[target]!r}")
    columns = tuple(header[j] for j in features)
    cells = np.empty((len(rows), len(features)), dtype=object)
    cells[:] = [[row[j].strip() for j in features] for row in rows]
    kinds = tuple(_column_kind(path, name, cells[:, c], lines) for c, name in enumerate(columns))
    y = _csv_labels(path, header[target], [row[target].strip() for row in rows], lines)
    numbers = all(kind is None for kind in kinds)
    if asked == "sequence" and numbers:
        return Raw(cells, y, Preprocessing("sequence", (len(columns),), columns=columns), impute=True)
    notes = ()
    if numbers and asked is None:
        notes = (
            f"the CSV's {len(columns)} number columns are read as tabular features; say 'time series' in "
            "the requirements to read each row as one sequence",
        )
    pre = Preprocessing("tabular", (len(columns),), columns=columns, categories=kinds)
    return Raw(cells, y, pre, impute=True, notes=notes)


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    try:
        header, rows, lines = read_csv(path)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"--data: cannot read {path} as UTF-8 CSV: {err}") from err
    if not header or not rows:
        raise DatasetError(f"--data: {path} is empty; expected a header row and at least one data row")
    for row, line in zip(rows, lines, strict=True):
        if len(row) != len(header):
            raise DatasetError(
                f"--data: {path}: line {line} has {len(row)} fields but the header has {len(header)}"
            )
    return header, rows, lines


def _label_column(path: Path, header: list[str], label_column: str | None) -> str:
    if label_column is None:
        if "label" not in header:
            raise DatasetError(
                f"--label-column: {path} has no column named 'label'; name the label column with "
                f"--label-column (columns: {', '.join(header)})"
            )
        return "label"
    if label_column not in header:
        raise DatasetError(
            f"--label-column: no column {label_column!r} in {path} (columns: {', '.join(header)})"
        )
    return label_column


def _column_kind(path: Path, name: str, cells: np.ndarray, lines: list[int]) -> tuple | None:
    """None for a number column, () for a category column (mostly text); a number column with a few
    text cells, or with inf, is an error naming the first."""
    present = [(i, as_number(c)) for i, c in enumerate(cells) if not is_missing(c)]
    texts = [i for i, v in present if v is None]
    if not texts:
        inf = [i for i, v in present if not math.isfinite(v)]
        if inf:
            raise DatasetError(
                f"--data: {path}: column {name!r} has {len(inf)} inf values (first at line {lines[inf[0]]}); "
                "replace them, or leave them empty to mark them missing"
            )
        return None
    if len(texts) < len(present) / 2:
        raise DatasetError(
            f"--data: {path}: column {name!r} holds numbers but line {lines[texts[0]]} has "
            f"{cells[texts[0]]!r} ({len(texts)} such cells); fix them, or leave them empty (or NA, ?) to mark "
            "them missing"
        )
    return ()


def _csv_labels(path: Path, name: str, labels: list[str], lines: list[int]) -> np.ndarray:
    """Numbers when every label is one, else the labels' text; a missing label is an error."""
    missing = [line for line, value in zip(lines, labels, strict=True) if is_missing(value)]
    if missing:
        raise DatasetError(
            f"--data: {path}: {len(missing)} empty or missing labels in {name!r}, first at line {missing[0]}; "
            "drop those rows"
        )
    try:
        return np.array([float(v) for v in labels])
    except ValueError:
        return np.array(labels)


def image_folder(path: Path) -> Raw:
    from PIL import Image

    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"--data: folder {path} has no class sub-folders; expected one sub-folder of images per class"
        )
    images, labels, ids = [], [], []
    for label, folder in enumerate(classes):
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(
                f"--data: class folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for file in files:
            try:
                with Image.open(file) as img:
                    img.load()
                    images.append(img.copy())
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                raise DatasetError(f"--data: cannot read image {file}: {err}") from err
            labels.append(label)
            ids.append(file.relative_to(path).as_posix())
    mode = "L" if all(img.mode in GRAY_MODES for img in images) else "RGB"
    size = Counter(img.size for img in images).most_common(1)[0][0]
    x = decode_images(images, mode, size)
    pre = Preprocessing(
        "image", x.shape[1:], channels_last=mode != "L", divide=255.0, image_mode=mode, image_size=size
    )
    return Raw(x, np.array(labels), pre, [c.name for c in classes], ids=ids)


def torchvision_dataset(name: str, data_root: str | None) -> Raw:
    try:
        import torchvision.datasets as tvd
    except ImportError as err:
        raise DatasetError(
            f"--data torchvision:{name} needs torchvision, which is not installed: pip install torchvision"
        ) from err
    if not data_root:
        raise DatasetError(f"--data-root is required for torchvision:{name} (the folder holding its files)")
    wanted = name.lower().replace("-", "").replace("_", "")
    known = {n.lower(): n for n in dir(tvd) if isinstance(getattr(tvd, n), type) and not n.startswith("_")}
    if wanted not in known:
        raise DatasetError(
            f"--data: torchvision has no dataset {name!r}; e.g. torchvision:cifar10, torchvision:mnist"
        )
    cls = getattr(tvd, known[wanted])

    def part(train: bool) -> tuple[np.ndarray, np.ndarray, Sequence[str] | None]:
        try:
            try:
                ds = cls(data_root, train=train, download=False)
            except TypeError:
                ds = cls(data_root, split="train" if train else "test", download=False)
        except (RuntimeError, OSError) as err:
            raise DatasetError(
                f"--data-root: torchvision:{name} not found in {data_root} ({err}); nothing is downloaded at "
                f'run time, fetch it once with: python -c "import torchvision; '
                f"torchvision.datasets.{known[wanted]}('{data_root}', download=True)\""
            ) from err
        x, y = getattr(ds, "data", None), getattr(ds, "targets", getattr(ds, "labels", None))
        if x is None or y is None:
            pairs = [ds[i] for i in range(len(ds))]
            try:
                x = np.stack([np.asarray(img) for img, _ in pairs])
            except ValueError as err:
                raise DatasetError(
                    f"--data: torchvision:{name} images differ in size; export them to an image folder"
                ) from err
            y = [t for _, t in pairs]
        return np.asarray(x), np.asarray(y), getattr(ds, "classes", None)

    x, y, names = part(True)
    x_test, y_test, _ = part(False)
    return Raw(x, y, _image(x), names, test=(x_test, y_test))


def _check_finite(x: np.ndarray, where: Callable[[tuple[int, ...]], str], what: str) -> None:
    if x.dtype.kind != "f":
        return
    nan, inf = np.isnan(x), np.isinf(x)
    n_nan, n_inf = int(nan.sum()), int(inf.sum())
    if n_nan or n_inf:
        first = tuple(int(i) for i in np.argwhere(nan | inf)[0])
        raise DatasetError(
            f"--data: {what} has {n_nan} NaN/missing and {n_inf} inf values (first at {where(first)}); "
            "clean or impute them first"
        )


def _image(x: np.ndarray) -> Preprocessing:
    """Images shaped (N, H, W), (N, C, H, W) or channels-last (N, H, W, C); uint8 pixels divided by 255."""
    channels_last = x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] > x.shape[-1]
    if channels_last:
        log.info("treating image array of shape %s as channels-last (N, H, W, C)", x.shape)
    divide = 255.0 if x.dtype == np.uint8 else None
    return Preprocessing("image", x.shape[1:], channels_last=channels_last, divide=divide)
