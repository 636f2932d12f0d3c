"""UCR/UEA time-series files for `load_dataset`: sktime's ``.ts`` format and Weka's ``.arff`` (numeric
attributes and a class attribute last; multivariate as one relational attribute whose rows are the
dimensions). Univariate or multivariate, series of equal length; ``?`` marks a missing value (NaN,
filled with the training split's median at that position: ``preprocess.imputed``).

Univariate files give samples shaped (L,), multivariate ones (C, L): sequences, the conv space.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from llmnas.task.loaders import DatasetError, Raw
from llmnas.task.preprocess import Preprocessing

MISSING_VALUES = frozenset({"?", "", "nan", "NaN"})
_ATTRIBUTE = re.compile(r"@attribute\s+('[^']*'|\"[^\"]*\"|\S+)\s+(.+)$", re.IGNORECASE)


def ts_file(path: Path) -> Raw:
    """An sktime .ts file: ``@`` tags, then after ``@data`` one series per line, its dimensions
    separated by ':' (values by ','), the class label (or ``@targetLabel`` value) last."""
    tags, data = {}, []
    for number, line in _lines(path, "#"):
        if data or line.lower() == "@data":
            data.append((number, line))
        elif line.startswith("@"):
            key, _, value = line[1:].partition(" ")
            tags[key.lower()] = value.strip()
    if not data:
        raise DatasetError(f"--data: {path} has no @data section; expected an sktime .ts file")
    if tags.get("timestamps", "false").lower() == "true":
        raise DatasetError(f"--data: {path}: timestamped .ts files are not supported; write the values only")
    regression = tags.get("targetlabel", "false").lower().startswith("true")
    declared = tags.get("classlabel", "false").split()
    if not regression and (not declared or declared[0].lower() != "true"):
        raise DatasetError(
            f"--data: {path} has no class labels (@classLabel false); llmnas needs labelled series"
        )
    series, labels, lines = [], [], []
    for number, line in data[1:]:
        *dims, label = line.split(":")
        if not dims:
            raise DatasetError(f"--data: {path}: line {number} has no ':' before its label")
        series.append([_values(path, number, d.split(",")) for d in dims])
        labels.append(label.strip())
        lines.append(number)
    _check_labels(path, labels, lines, None if regression else declared[1:])
    y = np.array([_number(path, n, v) for n, v in zip(lines, labels, strict=True)]) if regression else labels
    return _sequences(path, series, np.asarray(y), lines, "regression" if regression else None)


def arff_file(path: Path) -> Raw:
    """A UCR/UEA .arff file: numeric attributes (univariate) or one relational attribute
    (multivariate: each row of its quoted value one dimension), then the class attribute."""
    attributes, relational, data = [], None, []
    for number, line in _lines(path, "%"):
        lower = line.lower()
        if data or lower == "@data":
            data.append((number, line))
        elif lower.startswith("@end"):
            relational = None
        elif lower.startswith("@attribute"):
            name, kind = _attribute(path, number, line)
            if relational is not None:
                if kind != "numeric":
                    raise DatasetError(
                        f"--data: {path}: line {number}: relational attribute {name!r} is not numeric"
                    )
            else:
                attributes.append((name, kind))
                relational = name if kind == "relational" else None
    if len(attributes) < 2 or not data:
        raise DatasetError(f"--data: {path}: expected @attribute lines, the class attribute last, and @data")
    *inputs, (label_name, label_kind) = attributes
    multivariate = [kind for _, kind in inputs] == ["relational"]
    if not multivariate and any(kind != "numeric" for _, kind in inputs):
        raise DatasetError(
            f"--data: {path}: every attribute but the class must be numeric (or one relational attribute)"
        )
    series, labels, lines = [], [], []
    for number, line in data[1:]:
        if line.startswith("{"):
            raise DatasetError(f"--data: {path}: line {number}: sparse ARFF rows are not supported")
        fields = next(csv.reader([line], quotechar="'" if "'" in line else '"', skipinitialspace=True))
        if len(fields) != len(inputs) + 1:
            raise DatasetError(
                f"--data: {path}: line {number} has {len(fields)} values; the header declares {len(inputs) + 1}"
            )
        rows = fields[0].replace("\\n", "\n").splitlines() if multivariate else [",".join(fields[:-1])]
        series.append([_values(path, number, row.split(",")) for row in rows])
        labels.append(fields[-1].strip().strip("'\""))
        lines.append(number)
    nominal = label_kind[1] if isinstance(label_kind, tuple) else None
    if nominal is None and label_kind != "numeric":
        raise DatasetError(f"--data: {path}: the class attribute {label_name!r} must be nominal or numeric")
    _check_labels(path, labels, lines, nominal)
    y = labels if nominal else [_number(path, n, v) for n, v in zip(lines, labels, strict=True)]
    return _sequences(path, series, np.asarray(y), lines, None)


def _lines(path: Path, comment: str):
    """(line number, stripped text) of the non-blank, non-comment lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"--data: cannot read {path} as UTF-8 text: {err}") from err
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith(comment):
            yield number, line


def _attribute(path: Path, number: int, line: str) -> tuple[str, str | tuple[str, ...]]:
    """An @attribute's name and kind: "numeric", "relational", or ("nominal", values)."""
    match = _ATTRIBUTE.match(line)
    if match is None:
        raise DatasetError(f"--data: {path}: line {number}: cannot read the @attribute")
    name, kind = match.group(1).strip("'\""), match.group(2).strip()
    if kind.startswith("{") and kind.endswith("}"):
        return name, ("nominal", tuple(v.strip().strip("'\"") for v in kind[1:-1].split(",")))
    kind = kind.lower()
    if kind in ("numeric", "real", "integer"):
        return name, "numeric"
    if kind == "relational":
        return name, "relational"
    raise DatasetError(f"--data: {path}: line {number}: attribute {name!r} of type {kind!r} is not supported")


def _values(path: Path, number: int, cells: list[str]) -> list[float]:
    return [np.nan if c.strip() in MISSING_VALUES else _number(path, number, c) for c in cells]


def _number(path: Path, number: int, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DatasetError(f"--data: {path}: line {number}: {text.strip()!r} is not a number") from None


def _check_labels(path: Path, labels: list[str], lines: list[int], declared) -> None:
    if not labels:
        raise DatasetError(f"--data: {path} holds no series after @data")
    unknown = [(n, v) for n, v in zip(lines, labels, strict=True) if declared and v not in declared]
    if unknown:
        raise DatasetError(
            f"--data: {path}: line {unknown[0][0]}: label {unknown[0][1]!r} is not among the declared "
            f"classes ({', '.join(declared)})"
        )


def _sequences(path: Path, series: list, y: np.ndarray, lines: list[int], task: str | None) -> Raw:
    """Equal-length series as (N, L) (one dimension) or (N, C, L)."""
    c, length = len(series[0]), len(series[0][0])
    for dims, number in zip(series, lines, strict=True):
        if len(dims) != c or any(len(d) != length for d in dims):
            raise DatasetError(
                f"--data: {path}: line {number} has {len(dims)} dimension(s) of lengths "
                f"{sorted({len(d) for d in dims})}; the first series has {c} of length {length}: llmnas needs "
                "series of equal length (resample or pad them)"
            )
    x = np.array(series, dtype=np.float64)
    if np.isinf(x).any():
        raise DatasetError(
            f"--data: {path}: {int(np.isinf(x).sum())} inf values; replace them or mark them '?'"
        )
    x = x[:, 0] if c == 1 else x
    return Raw(x, y, Preprocessing("sequence", x.shape[1:]), task=task, impute=True)
