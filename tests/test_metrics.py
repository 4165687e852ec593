"""models/metrics.py against scikit-learn's definitions, on random labels with absent classes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from models.conditions import condition_metrics
from models.data import MISSING_CONDITIONS
from models.metrics import classification_metrics, mean_std
from models.metrics import confusion_matrix as our_confusion


def _sklearn(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    # sklearn's balanced accuracy warns on classes predicted but absent; macro recall over the true classes is UA
    present = np.unique(y_true)
    return {"wa": accuracy_score(y_true, y_pred),
            "ua": recall_score(y_true, y_pred, labels=present, average="macro", zero_division=0),
            "macro_f1": f1_score(y_true, y_pred, average="macro", zero_division=0),
            "weighted_f1": f1_score(y_true, y_pred, average="weighted", zero_division=0)}


@pytest.mark.parametrize("seed", range(12))
def test_metrics_equal_sklearn_with_absent_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 8))
    n = int(rng.integers(1, 60))
    # a random subset of classes may appear in truth and (independently) in predictions
    true_classes = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)), replace=False)
    pred_classes = rng.choice(n_classes, size=int(rng.integers(1, n_classes + 1)), replace=False)
    y_true = rng.choice(true_classes, size=n)
    y_pred = np.where(rng.random(n) < 0.4, y_true, rng.choice(pred_classes, size=n))
    ours = classification_metrics(y_true, y_pred, n_classes)
    theirs = _sklearn(y_true, y_pred)
    assert ours == pytest.approx(theirs, abs=1e-12)
    np.testing.assert_array_equal(our_confusion(y_true, y_pred, n_classes),
                                  confusion_matrix(y_true, y_pred, labels=list(range(n_classes))))


def test_perfect_and_all_wrong() -> None:
    y = np.array([0, 1, 2, 2])
    assert classification_metrics(y, y, 4) == {"wa": 1.0, "ua": 1.0, "macro_f1": 1.0, "weighted_f1": 1.0}
    wrong = classification_metrics(y, (y + 1) % 3, 4)
    assert wrong["wa"] == 0.0 and wrong["ua"] == 0.0 and wrong["macro_f1"] == 0.0


def test_labels_outside_classes_fail() -> None:
    with pytest.raises(ValueError, match="labels must lie"):
        classification_metrics([0, 4], [0, 1], 4)
    with pytest.raises(ValueError, match="shape"):
        classification_metrics([0, 1], [0], 4)


def test_average_is_the_pooled_set_not_the_mean_of_rows() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 25)
    predictions = {c: np.where(rng.random(25) < 0.2 * (i + 1), labels, rng.integers(0, 4, 25))
                   for i, c in enumerate(MISSING_CONDITIONS)}
    predictions["avl"] = labels.copy()
    metrics = condition_metrics(labels, predictions, 4)
    pooled_true = np.concatenate([labels] * 6)
    pooled_pred = np.concatenate([predictions[c] for c in MISSING_CONDITIONS])
    assert metrics["average"] == pytest.approx(_sklearn(pooled_true, pooled_pred), abs=1e-12)
    assert metrics["avl"]["ua"] == 1.0  # the full condition is reported but not pooled
    mean_of_rows = np.mean([metrics[c]["macro_f1"] for c in MISSING_CONDITIONS])
    assert metrics["average"]["macro_f1"] != pytest.approx(mean_of_rows, abs=1e-9)


def test_mean_std_is_population_std() -> None:
    assert mean_std([0.5, 0.7]) == pytest.approx({"mean": 0.6, "std": 0.1})
