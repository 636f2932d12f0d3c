"""Regression targets for `load_dataset`: when labels are a number to predict, their validation, and
random (unstratified) splits."""

from __future__ import annotations

import numpy as np

from llmnas.task.loaders import DatasetError

MIN_PER_SPLIT = 2  # R² needs two targets in each split


def task_of(y: np.ndarray) -> str:
    """Numeric labels that are not all whole numbers are a regression target; anything else is classes."""
    y = np.asarray(y)
    if y.dtype.kind == "f" and y.size and not np.array_equal(y, np.round(y)):
        return "regression"
    return "classification"


def numeric_targets(y: np.ndarray, spec: str) -> np.ndarray:
    """Regression targets as float64, one per sample; text and NaN/inf are errors naming a sample."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DatasetError(f"--data: regression targets must be 1-D (one value per sample), got {y.shape}")
    if y.dtype.kind not in "biuf":
        example = next((str(v) for v in y.astype(str) if not _is_number(v)), "")
        raise DatasetError(
            f"--data: {spec}: regression needs numeric targets, found {example!r}; pick the numeric "
            "column with --label-column, or ask for classification"
        )
    y = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise DatasetError(f"--data: {spec}: {bad.size} NaN/inf targets, first at sample {bad[0]}")
    return y


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def random_rows(
    n: int,
    fractions: tuple[float, float],
    max_samples: int | None,
    rng: np.random.Generator,
    *,
    own_test: bool,
) -> list[np.ndarray]:
    """Row indices [train, validation, test] of a pool of ``n``, shuffled; with ``own_test`` (the source
    has its own test split) only [train, validation]. ``max_samples`` caps the pool before splitting."""
    order = rng.permutation(n)
    if own_test:
        rows = np.split(order, [max(MIN_PER_SPLIT, round(n * fractions[0]))])[::-1]
    else:
        order = order[:max_samples]
        n_val, n_test = (max(MIN_PER_SPLIT, round(len(order) * f)) for f in fractions)
        val, test, train = np.split(order, [n_val, n_val + n_test])
        rows = [train, val, test]
    if min(len(r) for r in rows) < MIN_PER_SPLIT:
        raise DatasetError(
            f"--data: {n} samples are too few to split into train/validation/test for regression "
            f"(each needs at least {MIN_PER_SPLIT})"
        )
    return rows
