"""Stratified splits of class labels for `load_dataset` (datasets.py), and the check that every class
is scored on enough samples (regression's random splits: regression.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmnas.task.loaders import DatasetError

MIN_PER_CLASS = 2  # in validation and in test, or the data is refused
FEW_PER_CLASS = 5  # in validation or test: a note says the scores are coarse


def subsample(y: np.ndarray, k: int, cap: int | None, minimum: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified subsample of `cap` rows keeping up to `minimum` rows of every class."""
    if cap is None or cap >= len(y):
        return np.arange(len(y))
    counts = np.bincount(y, minlength=k)
    alloc = np.minimum(counts, minimum)
    rest = cap - int(alloc.sum())
    spare = counts - alloc
    exact = spare * rest / spare.sum()
    extra = np.floor(exact).astype(np.int64)
    extra[np.argsort(extra - exact, kind="stable")[: rest - int(extra.sum())]] += 1
    alloc += extra
    keep = [rng.permutation(np.flatnonzero(y == c))[: alloc[c]] for c in range(k)]
    return np.sort(np.concatenate(keep))


def stratified(
    y: np.ndarray,
    k: int,
    fractions: tuple[float, ...],
    rng: np.random.Generator,
    names: Sequence[str],
    max_samples: int | None,
) -> list[np.ndarray]:
    """Stratified split: [train, *one part per fraction], each shuffled, each with every class."""
    need = 1 + len(fractions)
    counts = np.bincount(y, minlength=k)
    short = np.flatnonzero(counts < need)
    if short.size:
        c = short[0]
        hint = f" (after --max-samples {max_samples})" if max_samples is not None else ""
        raise DatasetError(
            f"--data: class {names[c]!r} has {counts[c]} samples{hint}; each class needs at least {need} to "
            f"split into train/validation/test ({short.size} classes too small; for a numeric target, ask "
            'for regression in the requirements, e.g. "predict the value")'
        )
    parts: list[list[np.ndarray]] = [[] for _ in range(need)]
    for c in range(k):
        idx = rng.permutation(np.flatnonzero(y == c))
        sizes = [max(1, round(len(idx) * f)) for f in fractions]
        while len(idx) - sum(sizes) < 1:
            sizes[int(np.argmax(sizes))] -= 1
        bounds = np.cumsum([len(idx) - sum(sizes), *sizes])[:-1]
        for part, chunk in zip(parts, np.split(idx, bounds), strict=True):
            part.append(chunk)
    return [rng.permutation(np.concatenate(p)) for p in parts]


def per_class_note(
    counts: list[np.ndarray], names: Sequence[str], fractions: tuple[float, float], max_samples: int | None
) -> str | None:
    """Refuse a split where a class has under MIN_PER_CLASS samples in validation or test (its score
    would be noise); a note below FEW_PER_CLASS."""
    total = int(sum(c.sum() for c in counts))
    low, split, c = min(
        ((int(part[c]), split, c) for split, part in zip(("validation", "test"), counts[1:], strict=True)
         for c in range(len(part))),
        key=lambda item: item[0],
    )  # fmt: skip
    sizes = "/".join(str(int(part.sum())) for part in counts)
    if low < MIN_PER_CLASS:
        more = "add data" if max_samples is None else f"raise --max-samples ({max_samples})"
        raise DatasetError(
            f"--val-fraction/--test-fraction: class {names[c]!r} has {low} sample(s) in the {split} split "
            f"({total} rows, split {sizes} train/validation/test); every class needs at least "
            f"{MIN_PER_CLASS} in validation and in test: {more}, or raise --val-fraction ({fractions[0]}) or "
            f"--test-fraction ({fractions[1]})"
        )
    if low < FEW_PER_CLASS:
        return (
            f"class {names[c]!r} has only {low} samples in the {split} split (split {sizes} "
            "train/validation/test): its scores move in coarse steps; more data or a larger "
            "--val-fraction/--test-fraction steadies them"
        )
    return None
