"""The train stage's runs logged through dvclive, one directory per model and corpus (`dvclive/<model>/<corpus>/`),
so `dvc exp show`, `dvc plots` and the VS Code extension see every run:

  metrics.json                          the compact summary `dvc metrics show` and `dvc exp show` print: the
                                        headline numbers of `metrics/<model>/<corpus>.json` (mean over folds and
                                        seeds: `ua`, `wa`, `macro_f1` on the full input, `missing_ua` on MMIN's
                                        pooled missing conditions when there are any) and `step` (epochs logged)
  plots/metrics/<name>.tsv              per-epoch means over the runs (folds x seeds, the full labelled fraction)
                                        of every number the family logs (train_loss, val_ua, ...)
  plots/sklearn/confusion/<cond>.json   the test predictions of every run pooled, per condition, as class names

`Live(dvcyaml=None, save_dvc_exp=False)` with dvclive's repository and Studio hooks switched off (`_file_live`): the
generated dvc.yaml declares these files itself (pipeline/stages.py), no experiment is saved behind DVC's back, and
a stage runs the same in a fresh `git init`, under `dvc exp run` or outside any repository. Metrics are logged
without timestamps, so the files are the same bytes for the same runs. The full metrics JSON of DESIGN.md
(`metrics/<model>/<corpus>.json`) stays what it was.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.layout import LIVE_CURVES

SUMMARY_KEYS = ("ua", "wa", "macro_f1")
CURVES = LIVE_CURVES  # dvclive's per-epoch TSVs, inside a run's directory


def summary(metrics: dict[str, Any], full: str) -> dict[str, float]:
    """The headline numbers of a metrics JSON: the full input's means, and the missing conditions' pooled UA."""
    conditions = metrics.get("conditions", {})
    headline = {k: conditions[full][k]["mean"] for k in SUMMARY_KEYS if k in conditions.get(full, {})}
    if "ua" in conditions.get("average", {}):
        headline["missing_ua"] = conditions["average"]["ua"]["mean"]
    return {k: round(float(v), 6) for k, v in headline.items()}


def epoch_means(histories: Sequence[Sequence[dict[str, float]]]) -> list[dict[str, float]]:
    """Per epoch, the mean over runs of every logged number (a run that stopped early leaves later epochs)."""
    rows = []
    for epoch in range(max((len(h) for h in histories), default=0)):
        present = [h[epoch] for h in histories if len(h) > epoch]
        keys = sorted({k for r in present for k in r if k not in ("epoch", "seconds")})
        rows.append({k: float(np.mean([r[k] for r in present if k in r])) for k in keys})
    return rows


def confusions(runs: Sequence[dict[str, Any]], classes: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """condition -> (true, predicted) class names, pooled over the runs in order."""
    pooled: dict[str, tuple[list[str], list[str]]] = {}
    for run in runs:
        for cond, pair in sorted(run["predictions"].items()):
            true, pred = pooled.setdefault(cond, ([], []))
            true.extend(classes[int(i)] for i in pair["y_true"])
            pred.extend(classes[int(i)] for i in pair["y_pred"])
    return pooled


def _file_live() -> type:
    """dvclive's `Live` as a plain file writer: without its DVC and Git set-up (which opens the repository, fails in
    a Git repository without commits, and initialises DVC in a Git repository that has none) and without Studio
    (a stage posts nothing anywhere). The files it writes are the same."""
    from dvclive import Live

    class FileLive(Live):
        def _init_dvc(self) -> None:
            return None

        def _init_studio(self) -> None:
            self._studio_events_to_skip.update({"start", "data", "done"})

    return FileLive


def log_runs(directory: Path, metrics: dict[str, Any], runs: Sequence[dict[str, Any]], classes: Sequence[str],
             full: str) -> None:
    """Write the dvclive directory of one model on one corpus from the runs of the train stage (`runs` as in
    runs.json, those of the full labelled fraction) into `directory` (the stage's staging folder)."""
    with _file_live()(str(directory), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for row in epoch_means([r["history"] for r in runs]):
            for name, value in row.items():
                live.log_metric(name, round(value, 6), timestamp=False)
            live.next_step()
        for cond, (true, pred) in confusions(runs, classes).items():
            live.log_sklearn_plot("confusion_matrix", true, pred, name=f"confusion/{cond}.json",
                                  title=f"{metrics.get('model')} on {metrics.get('corpus')}: {cond}")
        live.summary = {**summary(metrics, full)}


def read_curves(directory: Path) -> dict[str, np.ndarray]:
    """dvclive's per-epoch TSVs (`plots/metrics/`) as columns aligned by step, with `epoch` = the step; a step a
    metric was not logged at reads NaN. ValueError names a file that is not `step<TAB><name>` rows."""
    logged: dict[str, dict[int, float]] = {}
    for path in sorted(Path(directory).rglob("*.tsv")):
        lines = path.read_text().splitlines()
        name = path.relative_to(directory).with_suffix("").as_posix()
        if not lines or lines[0].split("\t") != ["step", name.rsplit("/", 1)[-1]]:
            raise ValueError(f"{path} line 1: expected the header 'step<TAB>{name}'")
        try:
            logged[name] = {int(s): float(v) for s, v in (line.split("\t") for line in lines[1:])}
        except ValueError:
            raise ValueError(f"{path}: expected rows of '<step><TAB><number>'") from None
    steps = max((max(values, default=-1) for values in logged.values()), default=-1) + 1
    curves = {"epoch": np.arange(steps, dtype=np.float64)}
    for name, values in logged.items():
        curves[name] = np.array([values.get(s, np.nan) for s in range(steps)], dtype=np.float64)
    return curves


def read_summary(directory: Path) -> dict[str, Any]:
    """The compact summary a train stage left (for the report and tests)."""
    return json.loads((Path(directory) / "metrics.json").read_text())
