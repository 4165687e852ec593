"""runs.json and metrics.json through pipeline/run_record.py, the one writer of the train stage (pipeline/train.py)
and of the cross-corpus train stage (pipeline/cross_training.py): the same bytes as each wrote before it.

The expected texts below were written by the two stages' own code before they shared the helper (train.py's
`RunRecorder.add` and `write_outputs`, cross_training.py's `_run_record` and `train_cross`, at 9211cac)."""

from __future__ import annotations

import numpy as np
import torch

from models.trainer import FoldOutcome
from pipeline.run_record import conditions_summary, metrics_json, run_record, runs_json

CONFIG = {"family": "culture", "device": "cpu", "threads": 2, "workers": 1, "lr": np.float32(0.5),
          "features": {"audio": "compare"}}
PREDICTIONS = '"predictions": {"avl": {"y_pred": [1, 1, 0], "y_true": [0, 1, 1]}}'
COMMON = ('"extras": {"best_epoch": 1, "best_val_ua": 0.25, "culture_accuracy": 0.75}, "fold": "fold01", '
          '"history": [{"epoch": 1, "loss": 0.75, "val_ua": 0.5}]')
HEAD = ('{"classes": ["a", "b"], "config": {"family": "culture", "features": {"audio": "compare"}, "lr": 0.5}, '
        '"corpus": "c", "model": "m", "runs": [')
CROSS = HEAD + "{" + COMMON + ', "metrics": {"avl": {"ua": 0.5, "wa": 0.625}}, ' + PREDICTIONS + ', "seed": 0}]}\n'
TRAIN = (HEAD + '{"best_epoch": 1, ' + COMMON + ', "labelled_fraction": 0.5, "metrics": {"avl": {"ua": 0.5, '
         '"wa": 0.625}}, ' + PREDICTIONS + ', "seed": 0}]}\n')


def outcome(ua: float = 0.5) -> FoldOutcome:
    """A run as a family returns it: numpy and torch predictions, a timed history, scalar and array extras."""
    return FoldOutcome(metrics={"avl": {"ua": ua, "wa": 0.625}}, state={},
                       history=[{"epoch": 1, "loss": 0.75, "val_ua": 0.5, "seconds": 1.5}],
                       predictions={"avl": (np.array([0, 1, 1]), torch.tensor([1, 1, 0]))},
                       extras={"best_epoch": 1, "best_val_ua": np.float64(0.25), "culture_accuracy": 0.75,
                               "embeddings_source": np.zeros((2, 2), np.float32)})


def test_the_cross_path_writes_the_runs_json_it_wrote_before() -> None:
    assert runs_json("m", "c", CONFIG, ["a", "b"], [run_record("fold01", 0, outcome())]) == CROSS


def test_the_train_path_writes_the_runs_json_it_wrote_before() -> None:
    record = run_record("fold01", 0, outcome(), labelled_fraction=0.5, best_epoch=1)
    assert runs_json("m", "c", CONFIG, ["a", "b"], [record]) == TRAIN


def test_no_timing_reaches_runs_json() -> None:
    timed = outcome()
    timed.extras["seconds"] = 3.0
    assert runs_json("m", "c", CONFIG, ["a", "b"], [run_record("fold01", 0, timed)]) == CROSS


def test_metrics_json_holds_each_conditions_mean_and_std() -> None:
    conditions = conditions_summary([outcome(0.5), outcome(0.75)])
    assert list(conditions) == ["avl"] and conditions["avl"]["ua"]["mean"] == 0.625
    text = metrics_json({"model": "m", "conditions": conditions})
    assert text.startswith('{\n "conditions": {\n  "avl": {\n   "ua": {\n') and text.endswith('"model": "m"\n}\n')
