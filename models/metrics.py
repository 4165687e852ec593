"""Classification metrics as the papers report them: WA (accuracy), UA (mean per-class recall), macro and
weighted F1, and the confusion matrix. Pure numpy; equal to scikit-learn's definitions (tested against it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                     n_classes: int) -> np.ndarray:
    """Rows: true class; columns: predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    if len(t) and (t.min() < 0 or p.min() < 0 or t.max() >= n_classes or p.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, float]:
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    seen = (support + predicted) > 0  # sklearn's label set: present in y_true or y_pred
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "wa": float(tp.sum() / total) if total else 0.0,
        "ua": float(recall[support > 0].mean()) if (support > 0).any() else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / support.sum()) if support.sum() else 0.0,
    }


def classification_metrics(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                           n_classes: int) -> dict[str, float]:
    """WA, UA, macro F1, weighted F1 of integer predictions."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, n_classes))


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """Mean and population std (ddof=0) of a list of per-fold/per-seed figures."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()) if len(arr) else float("nan"),
            "std": float(arr.std()) if len(arr) else float("nan")}
