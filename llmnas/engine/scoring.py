"""Driver-side scoring: the worker returns logits (or, for regression, standardised values); the driver
holds the labels and computes accuracy (or MAE, RMSE and R² in the target's units)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmnas.task.datasets import Dataset
from llmnas.task.preprocess import values
from sandbox.protocol import PRED_FILES


class ScoringError(ValueError):
    """The worker's predictions are unusable (wrong shape, wrong dtype, unreadable)."""


def predicted(logits: np.ndarray) -> np.ndarray:
    """The class of each row: its largest finite logit; -1 (never a label) for a non-finite row."""
    finite = np.isfinite(logits).all(axis=1)
    return np.where(finite, np.argmax(np.nan_to_num(logits, nan=-np.inf), axis=1), -1)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose largest finite logit is the label; non-finite rows count as wrong."""
    return float((predicted(logits) == labels).mean()) if len(labels) else 0.0


def per_class(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Balanced accuracy (mean recall over the classes present) and macro F1 (over every class)."""
    pred = predicted(logits)
    recalls, f1s = [], []
    for k in range(num_classes):
        tp = float(np.sum((pred == k) & (labels == k)))
        actual, said = float(np.sum(labels == k)), float(np.sum(pred == k))
        if actual:
            recalls.append(tp / actual)
        f1s.append(2 * tp / (actual + said) if actual + said else 0.0)
    return {
        "balanced_acc": float(np.mean(recalls)) if recalls else 0.0,
        "f1": float(np.mean(f1s)) if f1s else 0.0,
    }


MAX_ROW_LOSS = 100.0  # a row's loss when its logits are not finite (and the cap on any row's loss)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits), each row capped at
    MAX_ROW_LOSS; rows with a non-finite logit count as MAX_ROW_LOSS."""
    if not len(labels):
        return 0.0
    finite = np.isfinite(logits).all(axis=1)
    safe = np.where(finite[:, None], logits, 0.0).astype(np.float64)
    shifted = safe - safe.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = -log_probs[np.arange(len(labels)), labels]
    return float(np.where(finite, np.minimum(rows, MAX_ROW_LOSS), MAX_ROW_LOSS).mean())


def load_logits(folder: Path, split: str, n: int, num_classes: int) -> np.ndarray:
    try:
        arr = np.load(Path(folder) / PRED_FILES[split], allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ScoringError(f"unreadable {split} predictions: {exc}") from None
    if arr.shape != (n, num_classes) or arr.dtype.kind != "f":
        raise ScoringError(
            f"{split} predictions have shape {arr.shape} {arr.dtype}, expected ({n}, {num_classes})"
        )
    return arr


def score(folder: Path, data: Dataset) -> dict:
    """Validation accuracy (drives selection) and loss (breaks its ties), balanced accuracy and macro F1 (for
    floors), the same on test (reported only); for regression the same with MAE, RMSE and R²
    (validation R² drives selection)."""
    val = load_logits(folder, "val", len(data.y_val), data.num_classes)
    test = load_logits(folder, "test", len(data.y_test), data.num_classes)
    if data.task == "regression":
        return _regression(val, data, "val") | _regression(test, data, "test")
    return {
        "val_acc": accuracy(val, data.y_val),
        "val_loss": cross_entropy(val, data.y_val),
        **{f"val_{k}": v for k, v in per_class(val, data.y_val, data.num_classes).items()},
        "test_acc": accuracy(test, data.y_test),
        **{f"test_{k}": v for k, v in per_class(test, data.y_test, data.num_classes).items()},
    }


MAX_STANDARD_ERROR = 1e6  # predictions further than this many target deviations away are clipped


def _regression(pred: np.ndarray, data: Dataset, split: str) -> dict:
    """MAE, RMSE and R² of standardised predictions mapped back to the target's units; for validation,
    also the loss (mean squared error in standard units). Non-finite predictions fail the candidate."""
    if not np.isfinite(pred).all():
        bad = int((~np.isfinite(pred)).any(axis=1).sum())
        raise ScoringError(f"{split} predictions hold {bad} NaN/inf values")
    target = (data.y_val if split == "val" else data.y_test).astype(np.float64)
    clipped = np.clip(pred.astype(np.float64), -MAX_STANDARD_ERROR, MAX_STANDARD_ERROR)
    err = values(data.preprocessing, clipped) - target  # the export's own mapping back to the target
    mse = float(np.mean(err**2))
    var = float(np.var(target))
    out = {
        f"{split}_mae": float(np.mean(np.abs(err))),
        f"{split}_rmse": mse**0.5,
        f"{split}_r2": 1.0 - mse / var if var > 0 else (1.0 if mse == 0 else 0.0),
    }
    if split == "val":
        out["val_loss"] = mse / data.target_std**2
    return out
