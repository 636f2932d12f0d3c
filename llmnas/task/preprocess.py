"""From the data as its owner has it to the network's inputs: the steps as plain data
(``Preprocessing``, saved as JSON) and the one implementation that applies them.

``load_dataset`` (datasets.py) sends every split through ``apply``; an export copies this file
unchanged beside its ``model.py`` (results/export.py), whose ``load()`` applies the same steps to a user's
raw inputs. So this module imports numpy (and Pillow, for image files) and nothing of llmnas.

The steps, in order: image files are decoded (converted to ``image_mode``, resized to ``image_size``,
pixels 0-255) and a CSV file's feature ``columns`` are read as numbers (``raw_inputs``: a number column
as its values, a category column as the index of the value in ``categories``; NaN for a missing value
(``MISSING``) or an unseen category); one raw sample, shaped ``sample_shape``, becomes one network input
shaped ``input_shape``: a missing value (NaN) becomes its ``fill``, the training split's median at that
position; category columns are one-hot encoded (a missing or unseen category is all zeros); a channel
axis is added, channels-last moved first; values are divided by ``divide`` (255 for 8-bit pixels);
tabular features are standardised with ``mean``/``std``. Everything fitted is fitted on the training
split. ``classes`` holds the labels as they are in the user's data, in the order of the network's
outputs (None: the output is the prediction); for regression, ``target`` maps the network's single
(standardised) output back to the target's units (``values``).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

FORMAT = 2  # of the JSON form (1: before categories and fill); a reader refuses others
READS = (1, 2)
MISSING = frozenset({"", "?", "na", "n/a", "nan", "null", "none", "<na>", "nat"})  # a missing cell, any case


@dataclass(frozen=True)
class Preprocessing:
    modality: str  # "image", "sequence" or "tabular"
    sample_shape: tuple[int, ...]  # one raw sample as the source holds it
    channels_last: bool = False  # (H, W, C) samples
    divide: float | None = None
    mean: tuple[float, ...] | None = None  # per feature, fitted on the training split
    std: tuple[float, ...] | None = None
    image_mode: str | None = None  # Pillow mode image files are converted to ("L", "RGB")
    image_size: tuple[int, int] | None = None  # (width, height) image files are resized to
    columns: tuple[str, ...] | None = None  # a CSV's feature columns, in order
    # per column of a table: the training split's categories of a category column, None for numbers
    categories: tuple[tuple[str, ...] | None, ...] | None = None
    fill: tuple[float | None, ...] | None = None  # per raw value of a sample: what NaN becomes
    classes: tuple[int | str, ...] | None = None
    target: tuple[float, float] | None = None  # regression: the training target's mean and deviation

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One network input: channels first, a channel axis added to (H, W) images and (L,) sequences."""
        s = self.sample_shape
        if self.categories is not None:
            return (sum(1 if c is None else len(c) for c in self.categories),)
        if self.channels_last:
            return (s[-1], *s[:-1])
        if (self.modality, len(s)) in (("image", 2), ("sequence", 1)):
            return (1, *s)
        return s

    def to_json(self) -> dict:
        return {"format": FORMAT, **asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_json(cls, data: dict) -> Preprocessing:
        if data.get("format") not in READS:
            raise ValueError(f"preprocessing format {data.get('format')!r} is not {FORMAT}: export again")
        known = {f.name for f in fields(cls)}
        return cls(**{k: _tuples(v) for k, v in data.items() if k in known})


def _tuples(value):
    """JSON lists, nested too, as tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def imputed(pre: Preprocessing, x_train) -> Preprocessing:
    """``pre`` with what the training split's raw samples decide: a table's categories (sorted) and, per
    raw value, the median that a missing one becomes (0 where the training split holds no value; none
    for a category column, where a missing value is all zeros)."""
    if pre.categories is not None:
        pre = replace(pre, categories=_seen(pre, _cells(pre, x_train)))
    x = raw_inputs(pre, x_train).astype(np.float32).reshape(len(x_train), -1)
    x[:, np.isnan(x).all(axis=0)] = 0.0
    median = np.nanmedian(x, axis=0)
    kinds = pre.categories or (None,) * x.shape[1]
    fill = tuple(None if c is not None else float(m) for c, m in zip(kinds, median, strict=True))
    return replace(pre, fill=fill)


def _seen(pre: Preprocessing, cells: np.ndarray) -> tuple[tuple[str, ...] | None, ...]:
    """The sorted categories of each category column of ``cells``."""
    return tuple(
        None if cats is None else tuple(sorted({_text(c) for c in cells[:, j] if not is_missing(c)}))
        for j, cats in enumerate(pre.categories)
    )


def standardised(pre: Preprocessing, x_train: np.ndarray) -> Preprocessing:
    """``pre`` with the per-feature mean and standard deviation of the training split's inputs."""
    x = apply(pre, x_train)
    mean = x.mean(axis=0, dtype=np.float64)
    std = x.std(axis=0, dtype=np.float64)
    std[std < 1e-12] = 1.0
    return replace(pre, mean=tuple(map(float, mean.ravel())), std=tuple(map(float, std.ravel())))


def apply(pre: Preprocessing, x) -> np.ndarray:
    """Raw numeric samples as float32 network inputs shaped (N, *input_shape). Takes (N, *sample_shape),
    one sample, or flat rows of as many values (sklearn's ``digits.data``)."""
    x = np.asarray(x)
    shape, size = pre.sample_shape, math.prod(pre.sample_shape)
    if x.shape == shape:
        x = x[None]
    elif x.shape[1:] != shape:
        if x.ndim != 2 or x.shape[1] != size:
            raise ValueError(
                f"inputs shaped {x.shape}: expected (N, {', '.join(map(str, shape))}) raw samples"
            )
        x = x.reshape(len(x), *shape)
    if x.dtype.kind not in "biuf":
        raise ValueError(
            f"inputs of dtype {x.dtype}: expected numbers (preprocess.raw_inputs reads a table's cells)"
        )
    x = x.astype(np.float32)
    if pre.fill is not None:
        fill = np.array([np.nan if v is None else v for v in pre.fill], np.float32).reshape(shape)
        x = np.where(np.isnan(x), fill, x)
    if pre.categories is not None:
        source, code, number = table_layout(pre)
        x = x[:, source]
        x = np.where(number, x, (x == code).astype(np.float32))
    if pre.channels_last:
        x = np.moveaxis(x, -1, 1)
    x = x.reshape(len(x), *pre.input_shape)
    if pre.divide is not None:
        x = x / np.float32(pre.divide)
    if pre.mean is not None:
        mean = np.asarray(pre.mean).reshape(pre.input_shape)
        x = ((x - mean) / np.asarray(pre.std).reshape(pre.input_shape)).astype(np.float32)
    return np.ascontiguousarray(x)


def table_layout(pre: Preprocessing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per network input of a table: the raw column it comes from, the category code it is one-hot for
    (NaN: a number column, its value), and whether it is a number."""
    source, code = [], []
    for j, cats in enumerate(pre.categories):
        ks = [np.nan] if cats is None else range(len(cats))
        source += [j] * len(ks)
        code += list(ks)
    code = np.array(code, np.float32)
    return np.array(source, np.int64), code, np.isnan(code)


def values(pre: Preprocessing, outputs) -> np.ndarray:
    """A regression network's outputs, shaped (N, 1), as predictions in the target's units, shaped (N,)."""
    out = np.asarray(outputs, dtype=np.float64)[:, 0]
    if pre.target is None:
        return out
    mean, std = pre.target
    return out * std + mean


# --------------------------------------------------------------------------- raw forms
def raw_inputs(pre: Preprocessing, data) -> np.ndarray:
    """The user's inputs as numbers: image files or Pillow images (when the model was trained on image
    files); for a model trained on a CSV, a CSV file, a pandas DataFrame (the feature columns by name) or
    rows of cells (numbers, text, None) as ``table_codes`` reads them; else what numpy reads."""
    if pre.image_mode is not None and _images(data) is not None:
        return decode_images(open_images(_images(data)), pre.image_mode, pre.image_size)
    if pre.columns is not None:
        return table_codes(pre, _cells(pre, data))
    return np.asarray(data)


def _cells(pre: Preprocessing, data) -> np.ndarray:
    """A table's feature cells, shaped (N, columns), from a CSV file, a DataFrame or rows."""
    if isinstance(data, str | os.PathLike):
        header, rows, _ = read_csv(data)
        return csv_columns(header, rows, pre.columns, data)
    if hasattr(data, "columns"):  # a pandas DataFrame
        missing = [c for c in pre.columns if c not in list(data.columns)]
        if missing:
            raise ValueError(
                f"the table has no column {missing[0]!r}; the model reads {', '.join(pre.columns)}"
            )
        data = data[list(pre.columns)]
    cells = np.asarray(data, dtype=object)
    return cells[None] if cells.ndim == 1 else cells


def table_codes(pre: Preprocessing, cells) -> np.ndarray:
    """A table's cells (N, columns) as float64: a number column's values, a category column's index in
    ``categories``; NaN for a missing cell (``MISSING``, None, NaN) or an unseen category."""
    cells = np.asarray(cells, dtype=object)
    names = pre.columns or tuple(map(str, range(pre.sample_shape[0])))
    if cells.ndim != 2 or cells.shape[1] != len(names):
        raise ValueError(
            f"rows shaped {cells.shape}: the model reads {len(names)} columns ({', '.join(names)})"
        )
    out = np.empty(cells.shape, np.float64)
    for j, cats in enumerate(pre.categories or (None,) * len(names)):
        if cats is None:
            out[:, j] = [_number(c, names[j]) for c in cells[:, j]]
        else:
            index = {c: float(k) for k, c in enumerate(cats)}
            out[:, j] = [np.nan if is_missing(c) else index.get(_text(c), np.nan) for c in cells[:, j]]
    return out


def is_missing(cell) -> bool:
    """Whether a cell is a missing value: None, NaN, or text in ``MISSING`` (pandas' NA as "<NA>")."""
    if isinstance(cell, float | np.floating):
        return math.isnan(cell)
    return cell is None or str(cell).strip().lower() in MISSING


def as_number(cell) -> float | None:
    """A non-missing cell as a number, or None when it is text."""
    if isinstance(cell, int | float | np.integer | np.floating) and not isinstance(cell, bool):
        return float(cell)
    try:
        return float(str(cell).strip())
    except ValueError:
        return None


def _number(cell, column: str) -> float:
    if is_missing(cell):
        return np.nan
    value = as_number(cell)
    if value is None:
        raise ValueError(f"column {column!r} holds numbers, not {cell!r} (leave a missing value empty)")
    return value


def _text(cell) -> str:
    """A category cell as the CSV's text: whole floats without '.0' (a DataFrame's 2007.0 is '2007')."""
    if isinstance(cell, float | np.floating) and float(cell).is_integer():
        return str(int(cell))
    return str(cell).strip()


def _images(data) -> list | None:
    """``data`` as a list of image files or Pillow images, or None when it is neither."""
    items = [data] if isinstance(data, str | os.PathLike) or hasattr(data, "convert") else data
    if (
        isinstance(items, list | tuple)
        and items
        and all(isinstance(i, str | os.PathLike) or hasattr(i, "convert") for i in items)
    ):
        return list(items)
    return None


def open_images(items: list) -> list:
    from PIL import Image

    out = []
    for item in items:
        if hasattr(item, "convert"):
            out.append(item)
            continue
        with Image.open(item) as img:
            img.load()
            out.append(img.copy())
    return out


def decode_images(images: list, mode: str, size: tuple[int, int]) -> np.ndarray:
    """Pillow images as pixels (0-255, float32), converted to ``mode`` and resized to ``size``
    (width, height): (N, H, W) for one channel, (N, H, W, C) otherwise."""
    from PIL import Image

    size = tuple(size)
    return np.stack(
        [
            np.asarray(img.convert(mode).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
            for img in images
        ]
    )


def read_csv(path) -> tuple[list[str], list[list[str]], list[int]]:
    """A UTF-8 CSV file's header (stripped), its non-empty rows and their line numbers."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, None) or []]
        rows, lines = [], []
        for row in reader:
            if row:
                rows.append(row)
                lines.append(reader.line_num)
    return header, rows, lines


def csv_columns(header: list[str], rows: list[list[str]], columns, path) -> np.ndarray:
    """The named columns of a CSV's rows as text cells, shaped (N, columns) (others are ignored)."""
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path} has no column {missing[0]!r}; the model reads {', '.join(columns)}")
    index = [header.index(c) for c in columns]
    cells = np.empty((len(rows), len(index)), dtype=object)
    cells[:] = [[row[j].strip() if j < len(row) else "" for j in index] for row in rows]
    return cells
