"""Driver-side (trusted) data loading: builtins, .npz, .csv, UCR/UEA .ts and .arff, image folders and
torchvision (the file formats are read in loaders.py and timeseries.py).

Everything is validated here, before any search starts, and every problem is a `DatasetError` whose
message is one line naming the flag to fix. Splits are stratified and fixed by the seed; the worker
only ever receives the training labels (see `Dataset.write_worker_files`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from llmnas.config import RunConfig
from llmnas.task.builtins import diabetes, digits, mnist1d
from llmnas.task.loaders import (
    MODALITIES,
    DatasetError,
    Raw,
    csv_file,
    image_folder,
    npz_file,
    torchvision_dataset,
)
from llmnas.task.preprocess import Preprocessing, apply, imputed, raw_inputs, standardised
from llmnas.task.regression import numeric_targets, random_rows, task_of
from llmnas.task.requirements import asked_modality, asked_task
from llmnas.task.splits import per_class_note, stratified, subsample
from llmnas.task.timeseries import arff_file, ts_file

log = logging.getLogger(__name__)

BUILTIN: tuple[str, ...] = ("digits", "mnist1d", "diabetes")
TASKS = ("classification", "regression")
ACCEPTED_FORMS = (
    "accepted --data forms: a builtin (digits, mnist1d, diabetes), a .npz file (arrays X and y), a .csv file "
    "(header row + label column), a UCR/UEA .ts or .arff time-series file, a folder with one sub-folder of "
    "images per class, or torchvision:NAME with --data-root"
)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Split, validated arrays: float32 inputs shaped (N, *input_shape) and int64 labels in
    [0, num_classes), or for regression (num_classes 1) float32 targets in the data's own units.

    ``preprocessing`` turns the source's raw samples into these inputs (fitted on the training split,
    with the labels as in the source); ``x_val_raw`` holds the validation samples before it, and
    ``test_samples`` names the source's samples of the test split (an image folder's files, else 0-based
    row indices (a CSV's data rows, the header not counted), into the source's own test part when it has
    one). ``notes``: lines for the user about how the data was read (the modality rule, small splits)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_shape: tuple[int, ...]
    num_classes: int
    modality: str  # "image" (C, H, W), "sequence" (C, L) or "tabular" (F,)
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    x_val_raw: np.ndarray
    test_samples: tuple[int | str, ...]
    notes: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return "classification" if self.preprocessing.target is None else "regression"

    @property
    def target_mean(self) -> float:
        """Regression: the training split's target mean (the worker trains on (y - mean) / std)."""
        return self.preprocessing.target[0] if self.preprocessing.target else 0.0

    @property
    def target_std(self) -> float:
        return self.preprocessing.target[1] if self.preprocessing.target else 1.0

    def write_worker_files(self, folder: Path) -> None:
        """Write train_x.npy, train_y.npy, val_x.npy, test_x.npy (no val/test labels), world-readable;
        regression targets are standardised with the training split's statistics."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
        train_y = self.y_train
        if self.task == "regression":
            train_y = ((train_y - self.target_mean) / self.target_std).astype(np.float32)
        for name, array in (
            ("train_x", self.x_train),
            ("train_y", train_y),
            ("val_x", self.x_val),
            ("test_x", self.x_test),
        ):
            path = folder / f"{name}.npy"
            np.save(path, np.ascontiguousarray(array), allow_pickle=False)
            path.chmod(0o644)


def load_dataset(
    spec: str,
    *,
    seed: int,
    task: str | None = None,
    label_column: str | None = None,
    data_root: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    max_samples: int | None = None,
    modality: str | None = None,
) -> Dataset:
    """Load, validate and split the dataset named by `spec` (the --data flag).

    Splits are stratified and fixed by `seed`. For mnist1d and torchvision the source's own test split
    is the test split (`test_fraction` is unused) and validation is carved from its training part.
    `max_samples` subsamples (stratified) before splitting. Inputs go through the source's
    `Preprocessing` (preprocess.py); tabular features are standardised with training statistics.
    ``task`` (classification or regression) is what the requirements ask for; None lets the data
    decide: regression for a builtin regression set or numeric labels that are not all whole numbers,
    else classification. Regression splits are random, not stratified. ``modality`` ("sequence",
    "image", "tabular") is what the requirements' words ask for. A .npz may hold a string array
    `modality` that decides; else the words do where X's rank allows, else the shape rule: 2-D tabular,
    3-D (N, C, L) sequence unless square (N, H, W) image, 4-D (N, C, H, W) image (channels-last is
    transposed); the rule used is in the Dataset's ``notes``. A CSV's all-number rows are sequences
    when the words ask for them.
    """
    _check_options(val_fraction, test_fraction, max_samples)
    if modality is not None and modality not in MODALITIES:
        raise DatasetError(f"modality must be one of {MODALITIES}, got {modality!r}")
    raw = _read(spec, seed=seed, label_column=label_column, data_root=data_root, modality=modality)
    if modality is not None and raw.pre.modality != modality:
        note = f"the requirements ask for {modality} data, but {spec} holds {raw.pre.modality} data: read as such"
        raw = replace(raw, notes=(*raw.notes, note))
    if (task or raw.task or task_of(raw.y)) == "regression":
        return _regression(spec, raw, seed, (val_fraction, test_fraction), max_samples)
    n_pool = len(raw.y)
    labels = raw.y if raw.test is None else np.concatenate([raw.y, raw.test[1]])
    codes, classes = _encode_labels(labels)
    if raw.names is not None and len(raw.names) == len(classes) and classes == tuple(range(len(classes))):
        classes = tuple(_plain(n) for n in raw.names)
    names = tuple(map(str, classes))
    if not names:
        raise DatasetError(f"--data: {spec} holds no samples")
    if len(names) < 2:
        raise DatasetError(
            f"--data: only one class ({names[0]!r}) in the labels; classification needs at least 2 "
            "(check --label-column)"
        )
    k = len(names)
    if max_samples is not None and max_samples < 3 * k:
        raise DatasetError(
            f"--max-samples {max_samples} is too small: {k} classes need at least {3 * k} samples"
        )
    rng = np.random.default_rng(seed)
    y = codes[:n_pool]
    if raw.test is None:
        keep = subsample(y, k, max_samples, 3, rng)
        train, val, test = stratified(y[keep], k, (val_fraction, test_fraction), rng, names, max_samples)
        rows = [keep[train], keep[val], keep[test]]
        sources = [(raw.x, y)] * 3
    else:
        y_test = codes[n_pool:]
        test_cap = None if max_samples is None else max(k, round(max_samples * len(y_test) / len(codes)))
        pool_cap = None if max_samples is None else max(2 * k, max_samples - test_cap)
        keep = subsample(y, k, pool_cap, 2, rng)
        keep_test = subsample(y_test, k, test_cap, 1, rng)
        train, val = stratified(y[keep], k, (val_fraction,), rng, names, max_samples)
        rows = [keep[train], keep[val], keep_test]
        sources = [(raw.x, y), (raw.x, y), (raw.test[0], y_test)]
    parts = _take(sources, rows, np.int64)
    counts = [np.bincount(y_part, minlength=k) for _, y_part in parts]
    note = per_class_note(counts, names, (val_fraction, test_fraction), max_samples)
    raw = replace(raw, notes=(*raw.notes, *([note] if note else [])))
    return _assemble(spec, raw, parts, rows[2], {"classes": classes}, names, f"{k} classes")


def load_data(cfg: RunConfig) -> Dataset:
    """The dataset, read as the task the requirements name (classification or regression) or, when they
    name none, as its labels say; and as the input modality they name (time series: sequences)."""
    return load_dataset(
        cfg.data,
        seed=cfg.seed,
        task=asked_task(cfg.requirements),
        modality=asked_modality(cfg.requirements),
        label_column=cfg.label_column,
        data_root=cfg.data_root,
        max_samples=cfg.max_samples,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
    )


# ---------------------------------------------------------------------------------------------- sources


def _read(
    spec: str, *, seed: int, label_column: str | None, data_root: str | None, modality: str | None
) -> Raw:
    key = spec.strip().lower()
    if key == "digits":
        return digits()
    if key == "mnist1d":
        return mnist1d(seed)
    if key == "diabetes":
        return diabetes()
    if key.startswith("torchvision:"):
        return torchvision_dataset(spec.strip().split(":", 1)[1], data_root)
    path = Path(spec).expanduser()
    if not path.exists():
        if not path.suffix and len(path.parts) == 1:
            raise DatasetError(
                f"--data: unknown dataset {spec!r} (no builtin, file or folder of that name); {ACCEPTED_FORMS}"
            )
        raise DatasetError(f"--data: no such file or folder: {path}")
    if path.is_dir():
        return image_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return npz_file(path, modality)
    if suffix == ".csv":
        return csv_file(path, label_column, modality)
    if suffix == ".ts":
        return ts_file(path)
    if suffix == ".arff":
        return arff_file(path)
    raise DatasetError(f"--data: unsupported file type {suffix or '(none)'!r} for {path}; {ACCEPTED_FORMS}")


# ------------------------------------------------------------------------------------------- regression


def _regression(
    spec: str, raw: Raw, seed: int, fractions: tuple[float, float], max_samples: int | None
) -> Dataset:
    """Random (unstratified) splits of numeric targets; the training split's target mean and deviation
    join the preprocessing (the worker trains on standardised targets, predictions are mapped back)."""
    y = numeric_targets(raw.y, spec)
    rows = random_rows(
        len(y), fractions, max_samples, np.random.default_rng(seed), own_test=raw.test is not None
    )
    sources = [(raw.x, y)] * 3
    if raw.test is not None:
        y_test = numeric_targets(raw.test[1], spec)
        rows.append(np.arange(len(y_test)))
        sources[2] = (raw.test[0], y_test)
    parts = _take(sources, rows, np.float32)
    y_train = parts[0][1]
    std = float(y_train.std(dtype=np.float64))
    if std < 1e-12:
        raise DatasetError(f"--data: {spec}: the target is constant in the training split; nothing to learn")
    target = (float(y_train.mean(dtype=np.float64)), std)
    return _assemble(spec, raw, parts, rows[2], {"classes": None, "target": target}, (), "regression")


def _take(sources: list, rows: list[np.ndarray], dtype) -> list[tuple[np.ndarray, np.ndarray]]:
    """(raw inputs, labels as ``dtype``) of train, validation and test: ``rows`` of each split's source."""
    return [(xs[r], ys[r].astype(dtype)) for (xs, ys), r in zip(sources, rows, strict=True)]


def _assemble(
    spec: str, raw: Raw, parts: list, test_rows: np.ndarray, fitted: dict, names: tuple[str, ...], what: str
) -> Dataset:
    """The Dataset of split raw ``parts``: the source's preprocessing (missing values and categories
    fitted on the training split where the source may hold them, standardised on it for tabular data,
    with ``fitted`` set) applied to every split."""
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    pre = imputed(raw.pre, x_tr) if raw.impute else raw.pre
    x_tr, x_va, x_te = (raw_inputs(pre, x) for x in (x_tr, x_va, x_te))  # a table's cells as numbers
    pre = standardised(pre, x_tr) if pre.modality == "tabular" else pre
    pre = replace(pre, **fitted)
    ids = test_rows if raw.ids is None else [raw.ids[i] for i in test_rows]
    data = Dataset(
        name=spec,
        x_train=apply(pre, x_tr),
        y_train=y_tr,
        x_val=apply(pre, x_va),
        y_val=y_va,
        x_test=apply(pre, x_te),
        y_test=y_te,
        input_shape=pre.input_shape,
        num_classes=max(1, len(names)),
        modality=pre.modality,
        class_names=names,
        preprocessing=pre,
        x_val_raw=x_va,
        test_samples=tuple(_plain(i) for i in ids),
        notes=raw.notes,
    )
    sizes = "/".join(str(len(y)) for y in (y_tr, y_va, y_te))
    log.info("dataset %s: %s %s, %s, train/val/test %s", spec, data.modality, data.input_shape, what, sizes)
    return data


# ------------------------------------------------------------------------------------------- validation


def _check_options(val_fraction: float, test_fraction: float, max_samples: int | None) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            f"--val-fraction/--test-fraction: need 0 < each and a sum below 1, got {val_fraction} and "
            f"{test_fraction}"
        )
    if max_samples is not None and max_samples < 1:
        raise DatasetError(f"--max-samples must be a positive integer, got {max_samples}")


def _encode_labels(y: np.ndarray) -> tuple[np.ndarray, tuple[int | str, ...]]:
    """Map integer or string labels to 0..K-1 (sorted); returns the codes and the labels, as integers
    or strings, in code order. Rejects negative, non-integer or huge values."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"--data: labels must be 1-D (one class per sample), got shape {y.shape}")
    if y.dtype.kind in "USO":
        values, codes = np.unique(y.astype(str), return_inverse=True)
        return codes.astype(np.int64), tuple(str(v) for v in values)
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise DatasetError(
                f"--data: {bad.size} NaN/inf labels, first at sample {bad[0]}; labels must be classes"
            )
        frac = np.flatnonzero(y != np.round(y))
        if frac.size:
            raise DatasetError(
                f"--data: {frac.size} non-integer labels (e.g. {y[frac[0]]} at sample {frac[0]}) but the "
                "requirements ask for classification; for a numeric target ask for regression (e.g. "
                '"predict the value"), or check --label-column'
            )
    elif y.dtype.kind not in "biu":
        raise DatasetError(f"--data: labels must be integers or strings, got dtype {y.dtype}")
    if y.dtype.kind != "b" and y.size:
        low, high = y.min(), y.max()
        if low < 0:
            raise DatasetError(
                f"--data: {int((y < 0).sum())} negative labels (e.g. {low}); labels must be class indices "
                ">= 0 or names (drop unlabelled rows, often marked -1)"
            )
        if high > 2**53:
            raise DatasetError(
                f"--data: label {high} is out of range for a class index (check --label-column)"
            )
    values, codes = np.unique(y.astype(np.int64), return_inverse=True)
    return codes.astype(np.int64), tuple(int(v) for v in values)


def _plain(value) -> int | str:
    """A label or sample id as JSON has it: an integer or a string."""
    return int(value) if isinstance(value, int | np.integer) else str(value)
