"""`pipeline.tracking`: the dvclive directory of a model on a corpus written from the train stage's runs: the same
bytes for the same runs (no timestamps), the compact summary, the per-epoch means, the confusions; the report
reads its curves from it (issue 24)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.layout import live_dir
from pipeline.report.inputs import ReportInputError, load_results
from pipeline.tracking import CURVES, epoch_means, log_runs, read_curves, read_summary, summary

CLASSES = ["ang", "hap", "neu", "sad"]


def runs() -> list[dict]:
    """Three runs (folds x seeds) as runs.json holds them; the last one stopped an epoch early."""
    rng = np.random.default_rng(0)
    out = []
    for k in range(3):
        epochs = 4 if k < 2 else 3
        history = [{"epoch": e, "train_loss": float(rng.random()), "val_ua": float(rng.random()), "seconds": 1.5}
                   for e in range(epochs)]
        y_true = rng.integers(0, 4, 10).tolist()
        out.append({"fold": f"fold0{k}", "seed": 0, "labelled_fraction": 1.0, "history": history,
                    "predictions": {"avl": {"y_true": y_true, "y_pred": rng.integers(0, 4, 10).tolist()},
                                    "azz": {"y_true": y_true, "y_pred": y_true}}})
    return out


METRICS = {"model": "mmin", "corpus": "demo",
           "conditions": {"avl": {"ua": {"mean": 0.61234567, "std": 0.1}, "wa": {"mean": 0.6, "std": 0.1},
                                  "macro_f1": {"mean": 0.55, "std": 0.1}, "weighted_f1": {"mean": 0.5, "std": 0.1}},
                          "average": {"ua": {"mean": 0.45, "std": 0.1}, "wa": {"mean": 0.4, "std": 0.1}}}}


def files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_live_directory_is_deterministic_and_holds_the_runs(tmp_path: Path) -> None:
    log_runs(tmp_path / "a", METRICS, runs(), CLASSES, "avl")
    log_runs(tmp_path / "b", METRICS, runs(), CLASSES, "avl")
    written = files(tmp_path / "a")
    assert written == files(tmp_path / "b")
    assert sorted(written) == ["metrics.json", "plots/metrics/train_loss.tsv", "plots/metrics/val_ua.tsv",
                               "plots/sklearn/confusion/avl.json", "plots/sklearn/confusion/azz.json"]
    assert read_summary(tmp_path / "a") == {"ua": 0.612346, "wa": 0.6, "macro_f1": 0.55, "missing_ua": 0.45,
                                            "step": 4}  # epochs logged
    assert summary(METRICS, "avl") == {k: v for k, v in read_summary(tmp_path / "a").items() if k != "step"}
    means = epoch_means([r["history"] for r in runs()])
    assert len(means) == 4 and set(means[0]) == {"train_loss", "val_ua"}  # no epoch, no seconds
    assert means[3]["val_ua"] == pytest.approx(np.mean([r["history"][3]["val_ua"] for r in runs()[:2]]))
    curves = read_curves(tmp_path / "a" / CURVES)
    np.testing.assert_allclose(curves["val_ua"], [m["val_ua"] for m in means], atol=1e-6)
    np.testing.assert_array_equal(curves["epoch"], np.arange(4))
    confusion = json.loads(written["plots/sklearn/confusion/avl.json"])
    assert len(confusion) == 30 and {row["actual"] for row in confusion} <= set(CLASSES)
    assert [row["actual"] for row in confusion] == [CLASSES[i] for r in runs() for i in r["predictions"]["avl"]
                                                    ["y_true"]]


def test_the_report_reads_the_live_curves(tmp_path: Path) -> None:
    (tmp_path / "metrics/mmin").mkdir(parents=True)
    (tmp_path / "metrics/mmin/demo.json").write_text(json.dumps(METRICS))
    log_runs(tmp_path / live_dir("mmin", "demo"), METRICS, runs(), CLASSES, "avl")
    results = load_results(tmp_path, "mmin", "demo")
    assert results is not None and "dvclive/mmin/demo/plots/metrics" in results.files
    assert set(results.curves) == {"epoch", "train_loss", "val_ua"} and len(results.curves["epoch"]) == 4
    (tmp_path / live_dir("mmin", "demo") / CURVES / "val_ua.tsv").write_text("when\tval_ua\n")
    with pytest.raises(ReportInputError, match="val_ua.tsv line 1"):
        load_results(tmp_path, "mmin", "demo")


def test_logging_touches_no_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a Git repository without commits or DVC (a fresh `git init`), the files are written and nothing else:
    no `.dvc` initialised, no experiment."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    log_runs(Path("dvclive/mmin/demo"), METRICS, runs(), CLASSES, "avl")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git", "dvclive"]
    assert read_summary(Path("dvclive/mmin/demo"))["ua"] == 0.612346
