"""What the train stage records of its runs, for a corpus (pipeline/train.py) and for a cross-corpus protocol
(pipeline/cross_training.py) alike: one runs.json entry per run, the mean and std of every condition's metrics over
the runs, and the bytes of metrics.json and runs.json.

No timings are recorded (a history row's or an extra's "seconds"): the outputs are the same bytes on any machine,
with any number of workers, which is also why `RUN_SETTINGS` are left out of the recorded configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from models.metrics import mean_std
from models.trainer import FoldOutcome

RUN_SETTINGS = ("device", "threads", "workers")  # where and how fast; the outputs are the same bytes either way


def jsonable(value: Any) -> Any:
    """Arrays, tensors and numpy scalars as plain lists and numbers, inside dicts and lists too."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def run_record(fold: str, seed: int, outcome: FoldOutcome, **fields: Any) -> dict[str, Any]:
    """One run's entry in runs.json: its fold and seed, `fields` (the labelled fraction, ...), its metrics, its
    history, its test predictions and its scalar extras (arrays go to extras.pt, timings nowhere)."""
    return {"fold": fold, "seed": seed, **fields, "metrics": outcome.metrics,
            "history": [{k: v for k, v in row.items() if k != "seconds"} for row in outcome.history],
            "predictions": {c: {"y_true": jsonable(t), "y_pred": jsonable(p)}
                            for c, (t, p) in outcome.predictions.items()},
            "extras": {k: jsonable(v) for k, v in (outcome.extras or {}).items()
                       if isinstance(v, (int, float, str)) and "seconds" not in k}}


def conditions_summary(outcomes: Sequence[FoldOutcome]) -> dict[str, Any]:
    """condition -> metric -> its mean and std over the runs that scored the condition."""
    conditions = sorted({c for o in outcomes for c in o.metrics})
    out: dict[str, Any] = {}
    for cond in conditions:
        runs = [o.metrics[cond] for o in outcomes if cond in o.metrics]
        out[cond] = {m: mean_std([r[m] for r in runs]) for m in sorted(runs[0])}
    return out


def metrics_json(metrics: Mapping[str, Any]) -> str:
    """The text of metrics/<model>/<corpus>.json."""
    return json.dumps(metrics, indent=1, sort_keys=True) + "\n"


def runs_json(model: str, corpus: str, config: Mapping[str, Any], classes: Sequence[str],
              runs: Sequence[dict[str, Any]]) -> str:
    """The text of checkpoints/<model>/<corpus>/runs.json: the configuration as it took effect (less
    `RUN_SETTINGS`), the classes and every run's entry."""
    recorded = {k: v for k, v in config.items() if k not in RUN_SETTINGS}
    return json.dumps({"model": model, "corpus": corpus, "config": jsonable(recorded), "classes": list(classes),
                       "runs": list(runs)}, sort_keys=True) + "\n"
