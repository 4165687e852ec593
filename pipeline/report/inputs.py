"""What the report stage reads: the train stage's metrics, runs and curves of one model on one corpus, and the
provenance of those results (feature stores, code, params) from `dvc.lock`.

Kept apart from the tables and figures so that both read the same checked records. A malformed file is a
`ReportInputError` naming the file (and line, for JSON/YAML); a model that was never trained is not an error: its
loader returns None and the report says so.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from models.condition_names import AVERAGE, CONDITIONS, condition_modalities, missing_conditions, modalities_of
from pipeline.errors import AffectflowError
from pipeline.layout import curves_path, extras_path, live_dir, metrics_path, runs_path
from pipeline.tracking import CURVES
from pipeline.tracking import read_curves as read_live_curves

__all__ = ["AVERAGE", "ModelResults", "Provenance", "ReportInputError", "Stat", "load_extras", "load_results",
           "provenance", "read_lock"]


class ReportInputError(AffectflowError, ValueError):
    """A metrics, runs, curves, extras or lock file that exists but cannot be read as the train stage writes it."""


@dataclass(frozen=True)
class Stat:
    """A figure over runs (folds x seeds): mean and population std; NaN mean = not available."""

    mean: float
    std: float

    @property
    def available(self) -> bool:
        return not math.isnan(self.mean)


MISSING_STAT = Stat(float("nan"), float("nan"))


@dataclass
class ModelResults:
    """Everything the train stage left for one model on one corpus (runs and curves may be absent)."""

    model: str
    corpus: str
    metrics: dict[str, Any]
    runs: dict[str, Any] | None = None
    curves: dict[str, np.ndarray] | None = None
    extras_path: Path | None = None
    files: list[str] = field(default_factory=list)

    @property
    def n_folds(self) -> int:
        return int(self.metrics.get("folds", 0))

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.metrics.get("seeds", [])]

    def stat(self, condition: str, metric: str) -> Stat:
        """Mean/std of `metric` at `condition`; falls back to a scalar of the runs' extras (e.g. MMGCN's
        test-selected weighted F1) when the condition has no such metric."""
        entry = self.metrics.get("conditions", {}).get(condition, {}).get(metric)
        if isinstance(entry, Mapping) and "mean" in entry:
            return Stat(float(entry["mean"]), float(entry.get("std", float("nan"))))
        values = [r["extras"][metric] for r in self.full_runs()
                  if isinstance(r.get("extras", {}).get(metric), (int, float))]
        if values:
            arr = np.asarray(values, dtype=np.float64)
            return Stat(float(arr.mean()), float(arr.std()))
        return MISSING_STAT

    def conditions(self) -> list[str]:
        """The test conditions the metrics hold (a corpus with fewer modalities has fewer)."""
        return list(self.metrics.get("conditions", {}))

    def own_full_condition(self) -> str | None:
        """The condition with every modality the model was tested on: "avl" over three, "azz" for audio alone."""
        named = [c for c in self.conditions() if c in CONDITIONS]
        return max(named, key=lambda c: len(condition_modalities(c))) if named else None

    def resolve(self, condition: str, full: str) -> str:
        """`condition` as this model has it: the configured full condition `full` becomes the model's own full
        condition when its metrics lack `full` (a corpus without every modality)."""
        if condition == full and condition not in self.conditions():
            return self.own_full_condition() or condition
        return condition

    def sweep(self) -> dict[str, Any]:
        return self.metrics.get("sweep", {}).get("labelled_fraction", {})

    def sweep_stat(self, fraction: str, condition: str, metric: str) -> Stat:
        entry = self.sweep().get(fraction, {}).get("conditions", {}).get(condition, {}).get(metric)
        if isinstance(entry, Mapping) and "mean" in entry:
            return Stat(float(entry["mean"]), float(entry.get("std", float("nan"))))
        return MISSING_STAT

    def full_runs(self) -> list[dict[str, Any]]:
        """The runs at the largest labelled fraction: the ones the `conditions` summary is computed from."""
        runs = (self.runs or {}).get("runs", [])
        if not runs:
            return []
        full = max(float(r.get("labelled_fraction", 1.0)) for r in runs)
        return [r for r in runs if float(r.get("labelled_fraction", 1.0)) == full]

    def classes(self) -> list[str]:
        return [str(c) for c in (self.runs or {}).get("classes", [])]

    def pooled_predictions(self, condition: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(y_true, y_pred) pooled over the full-fraction runs; "average" pools the missing conditions over the
        modalities the run was tested on (the six over three; unless a run stored an "average" entry itself).
        None when no run has the condition."""
        wanted = [condition] if condition != AVERAGE else [AVERAGE]
        trues, preds = [], []
        for run in self.full_runs():
            predictions = run.get("predictions", {})
            names = wanted
            if condition == AVERAGE and AVERAGE not in predictions:
                pooled = missing_conditions(modalities_of(predictions))
                if not pooled or not all(c in predictions for c in pooled):
                    continue
                names = list(pooled)
            for name in names:
                if name in predictions:
                    trues.append(np.asarray(predictions[name]["y_true"], dtype=np.int64))
                    preds.append(np.asarray(predictions[name]["y_pred"], dtype=np.int64))
        if not trues:
            return None
        return np.concatenate(trues), np.concatenate(preds)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportInputError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None


def read_curves(path: Path) -> dict[str, np.ndarray]:
    """The per-epoch means CSV as columns; empty cells (a key a run did not log) read as NaN."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or "epoch" not in rows[0]:
        raise ReportInputError(f"{path} line 1: expected a header starting with 'epoch'")
    header = rows[0]
    columns: dict[str, list[float]] = {name: [] for name in header}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ReportInputError(f"{path} line {line_no}: {len(row)} cells, the header has {len(header)}")
        for name, cell in zip(header, row, strict=True):
            try:
                columns[name].append(float(cell) if cell != "" else float("nan"))
            except ValueError:
                raise ReportInputError(f"{path} line {line_no}: column {name!r} is not a number: {cell!r}") from None
    return {name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}


def load_results(root: Path, model: str, corpus: str) -> ModelResults | None:
    """The train stage's outputs of `model` on `corpus` under `root`; None when it has no metrics file."""
    metrics_file = root / metrics_path(model, corpus)
    if not metrics_file.exists():
        return None
    metrics = read_json(metrics_file)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("conditions"), dict):
        raise ReportInputError(f"{metrics_file}: expected an object with a 'conditions' mapping")
    results = ModelResults(model, corpus, metrics, files=[str(metrics_path(model, corpus))])
    runs_file = root / runs_path(model, corpus)
    if runs_file.exists():
        results.runs = read_json(runs_file)
        if not isinstance(results.runs, dict) or not isinstance(results.runs.get("runs"), list):
            raise ReportInputError(f"{runs_file}: expected an object with a 'runs' list")
        results.files.append(str(runs_path(model, corpus)))
    live_curves = live_dir(model, corpus) / CURVES  # dvclive's files (pipeline/tracking.py), the CSV before them
    curves_file = root / curves_path(model, corpus)
    if (root / live_curves).is_dir():
        try:
            results.curves = read_live_curves(root / live_curves)
        except ValueError as err:
            raise ReportInputError(str(err)) from None
        results.files.append(live_curves.as_posix())
    elif curves_file.exists():
        results.curves = read_curves(curves_file)
        results.files.append(str(curves_path(model, corpus)))
    extras_file = root / extras_path(model, corpus)
    if extras_file.exists():
        results.extras_path = extras_file
    return results


def _numpy_safe_globals() -> list[Any]:
    """What `torch.load(weights_only=True)` must be allowed to rebuild numpy arrays (extras.pt holds some)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                                         np.int64, np.uint8, np.bool_)]
    return [np.ndarray, np.dtype, _reconstruct, *dtypes]


def load_extras(path: Path) -> dict[str, Any]:
    """extras.pt without unpickling arbitrary objects (tensors, numpy arrays, lists, scalars only)."""
    import torch  # only here: the rest of the report reads JSON and CSV

    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            extras = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises plain Exceptions/UnpicklingError for unreadable or unsafe files
        raise ReportInputError(f"{path}: cannot be read as the train stage's extras ({err})") from None
    if not isinstance(extras, dict):
        raise ReportInputError(f"{path}: expected a dict, got {type(extras).__name__}")
    return extras


# ---- provenance from dvc.lock --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """Where one model's results came from, as dvc.lock recorded it when its train stage last ran."""

    stage: str
    stores: tuple[tuple[str, str], ...]  # (path, md5)
    code_md5: str
    params_md5: str


def read_lock(path: Path) -> dict[str, dict[str, Any]]:
    """The stage entries of dvc.lock (empty when there is no lock file)."""
    if not path.exists():
        return {}
    try:
        lock = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ReportInputError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    stages = lock.get("stages", {}) if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise ReportInputError(f"{path}: expected a 'stages' mapping")
    return stages


def _matches(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p if p.endswith("/") else p + "/") for p in prefixes)


def digest(lines: Sequence[str]) -> str:
    return hashlib.md5("\n".join(lines).encode()).hexdigest()


def code_commit(root: Path, code_paths: Sequence[str]) -> str | None:
    """The last git commit that changed `code_paths` (pipeline/, models/), when they have no uncommitted or untracked
    change, so that the commit names the code exactly. Not HEAD: a commit of outputs alone (the demo's metrics)
    leaves the code, and so the report's bytes, as they were. None outside git, without git, or with changes."""
    import subprocess

    paths = [p.rstrip("/") for p in code_paths]
    try:
        last = subprocess.run(["git", "log", "-1", "--format=%H", "--", *paths], cwd=root, capture_output=True,
                              text=True, timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=root, capture_output=True,
                               text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if last.returncode != 0 or dirty.returncode != 0 or dirty.stdout.strip() or not last.stdout.strip():
        return None
    return last.stdout.strip()


def find_train_stage(stages: Mapping[str, dict[str, Any]], model: str, corpus: str) -> str | None:
    """The lock entry whose outs hold the model's metrics file (robust to how dvc.yaml names the stage); falls
    back to the name `train@<model>-<corpus>`."""
    wanted = metrics_path(model, corpus).as_posix()
    for name in sorted(stages):
        outs = stages[name].get("outs") or []
        if any(isinstance(o, dict) and o.get("path") == wanted for o in outs):
            return name
    fallback = f"train@{model}-{corpus}"
    return fallback if fallback in stages else None


def provenance(stages: Mapping[str, dict[str, Any]], model: str, corpus: str,
               config: Mapping[str, Any]) -> Provenance | None:
    """Feature stores (path, md5), one md5 over the code deps' (path, md5) lines and one over the stage's params,
    for the train stage of `model` on `corpus`; None when dvc.lock has no such stage."""
    name = find_train_stage(stages, model, corpus)
    if name is None:
        return None
    entry = stages[name]
    deps = sorted((d for d in entry.get("deps") or [] if isinstance(d, dict) and "path" in d),
                  key=lambda d: d["path"])
    stores = tuple((d["path"], str(d.get("md5", "?")).removesuffix(".dir"))
                   for d in deps if _matches(d["path"], config["stores"]))
    code = [f"{d['path']} {d.get('md5', '?')}" for d in deps if _matches(d["path"], config["code"])]
    params = json.dumps(entry.get("params") or {}, sort_keys=True, default=str)
    return Provenance(name, stores, digest(code) if code else "", hashlib.md5(params.encode()).hexdigest())
