"""From the data as its owner has it to the network's inputs: the steps as plain data
(``Preprocessing``, saved as JSON) and the one implementation that applies them.

``load_dataset`` (datasets.py) sends every split through ``apply``; an export copies this file
unchanged beside its ``model.py`` (runs/export.py), whose ``load()`` applies the same steps to a user's
raw inputs. So this module imports numpy (and Pillow, for image files) and nothing of llmnas.

The steps, in order: image files are decoded (converted to ``image_mode``, resized to ``image_size``,
pixels 0-255) and a CSV file's feature ``columns`` are read (``raw_inputs``); one raw sample, shaped
``sample_shape``, becomes one network input shaped ``input_shape`` (a channel axis added, channels-last
moved first); values are divided by ``divide`` (255 for 8-bit pixels); tabular features are
standardised with ``mean``/``std`` fitted on the training split. ``classes`` holds the labels as they
are in the user's data, in the order of the network's outputs (None: the output is the prediction);
for regression, ``target`` maps the network's single (standardised) output back to the target's units
(``values``).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict, dataclass, fields, replace

import numpy as np

FORMAT = 1  # of the JSON form; a reader refuses others


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
    classes: tuple[int | str, ...] | None = None
    target: tuple[float, float] | None = None  # regression: the training target's mean and deviation

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One network input: channels first, a channel axis added to (H, W) images and (L,) sequences."""
        s = self.sample_shape
        if self.channels_last:
            return (s[-1], *s[:-1])
        if (self.modality, len(s)) in (("image", 2), ("sequence", 1)):
            return (1, *s)
        return s

    def to_json(self) -> dict:
        return {"format": FORMAT, **asdict(self), "input_shape": list(self.input_shape)}

    @classmethod
    def from_json(cls, data: dict) -> Preprocessing:
        if data.get("format") != FORMAT:
            raise ValueError(f"preprocessing format {data.get('format')!r} is not {FORMAT}: export again")
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


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
        raise ValueError(f"inputs of dtype {x.dtype}: expected numbers")
    x = x.astype(np.float32)
    if pre.channels_last:
        x = np.moveaxis(x, -1, 1)
    x = x.reshape(len(x), *pre.input_shape)
    if pre.divide is not None:
        x = x / np.float32(pre.divide)
    if pre.mean is not None:
        mean = np.asarray(pre.mean).reshape(pre.input_shape)
        x = ((x - mean) / np.asarray(pre.std).reshape(pre.input_shape)).astype(np.float32)
    return np.ascontiguousarray(x)


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
    files), a CSV file or a table with the feature columns by name (a CSV), else what numpy reads."""
    if pre.image_mode is not None and _images(data) is not None:
        return decode_images(open_images(_images(data)), pre.image_mode, pre.image_size)
    if pre.columns is not None and isinstance(data, str | os.PathLike):
        header, rows, _ = read_csv(data)
        return csv_columns(header, rows, pre.columns, data)
    if pre.columns is not None and hasattr(data, "columns"):  # a pandas DataFrame
        return np.asarray(data[list(pre.columns)], dtype=np.float64)
    return np.asarray(data)


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
    """The named columns of a CSV's rows as float64 (the label column and others are ignored)."""
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path} has no column {missing[0]!r}; the model reads {', '.join(columns)}")
    index = [header.index(c) for c in columns]
    return np.array([[float(row[j]) for j in index] for row in rows], dtype=np.float64)
