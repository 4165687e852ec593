"""The report stage on fixed train-stage outputs written here: table cells (exact strings), bold best, provenance
from dvc.lock, missing models, figures (titled, labelled, non-uniform PNGs) and byte-identical re-runs."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from matplotlib.figure import Figure
from PIL import Image

from pipeline.params import ConfigError
from pipeline.report.inputs import ReportInputError
from pipeline.report.stage import build_report, check_report_config, list_plot_files, write_report

CONDITIONS = ("azz", "zvz", "zzl", "avz", "azl", "zvl", "average", "avl")
CLASSES = ["ang", "hap", "neu", "sad"]
MD5 = {"features/demo/compare.h5": "0123456789abcdef0123456789abcdef",
       "features/demo/denseface.h5": "1111111111abcdef0123456789abcdef",
       "features/demo/bert.h5": "2222222222abcdef0123456789abcdef",
       "pipeline/train.py": "3333333333abcdef0123456789abcdef",
       "models": "4444444444abcdef0123456789abcdef.dir",
       "splits/demo.json": "5555555555abcdef0123456789abcdef"}

CONFIG = {
    "corpora": ["demo"],
    "out_dir": "reports",
    "decimals": 4,
    "group_rows_by": "metric",
    "columns": {"azz": "{a}", "zvz": "{v}", "zzl": "{t}", "avz": "{a,v}", "azl": "{a,t}", "zvl": "{v,t}",
                "average": "Average", "avl": "{a,v,t}"},
    "full_condition": "avl",
    "metric_labels": {"wa": "WA", "ua": "UA", "macro_f1": "Macro F1", "weighted_f1": "Weighted F1"},
    "provenance": {"stores": ["features/"], "code": ["pipeline/", "models/"], "md5_chars": 8},
    "plots": {"dpi": 60, "confusion": {"conditions": ["avl", "average"], "normalize": True},
              "bars": {"metric": "ua"}, "curves": {"loss": "train_loss", "score": "val_ua"},
              "tsne": {"models": ["mmin"], "perplexity": 10, "random_state": 0, "max_points": 40}},
    "tables": [
        {"title": "MMIN family: UA/WA per test condition", "kind": "conditions",
         "models": ["utt_fusion", "mmin", "mmin_ae"], "metrics": ["wa", "ua"]},
        {"title": "MMGCN: weighted F1", "kind": "full", "models": {"no graph": "mmgcn_nograph", "MMGCN": "mmgcn"},
         "metrics": ["weighted_f1", "wa", "test_selected_weighted_f1"]},
        {"title": "SSMM: UA by labelled fraction", "kind": "sweep", "models": ["ssmm_supervised", "ssmm"],
         "metric": "ua"},
    ],
}


def stat(mean: float, std: float) -> dict[str, float]:
    return {"mean": mean, "std": std}


def condition_block(base: float, conditions: tuple[str, ...]) -> dict:
    """Deterministic distinct values: condition k gets base + k/100 for UA and base + k/100 - 0.05 for WA."""
    return {c: {"wa": stat(base + k / 100 - 0.05, 0.01), "ua": stat(base + k / 100, 0.02 + k / 1000),
                "macro_f1": stat(base, 0.0), "weighted_f1": stat(base + 0.001, 0.005)}
            for k, c in enumerate(conditions)}


def write_model(root: Path, model: str, family: str, conditions: dict, *, sweep: dict | None = None,
                prediction_conditions: tuple[str, ...] = ("avl",), epochs: int = 5, extras: dict | None = None,
                embeddings: bool = False) -> None:
    metrics = {"model": model, "family": family, "corpus": "demo", "protocol": "speaker", "folds": 2,
               "fold_names": ["fold0", "fold1"], "seeds": [0, 1], "conditions": conditions}
    if sweep:
        metrics["sweep"] = {"labelled_fraction": sweep}
    path = root / "metrics" / model / "demo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=1, sort_keys=True))
    rng = np.random.default_rng(len(model))
    runs = []
    for fold in ("fold0", "fold1"):
        for seed in (0, 1):
            y_true = rng.integers(0, 4, 30)
            predictions = {c: {"y_true": y_true.tolist(),
                               "y_pred": np.where(rng.random(30) < 0.6, y_true, rng.integers(0, 4, 30)).tolist()}
                           for c in prediction_conditions}
            history = [{"epoch": e, "train_loss": 1.5 / (e + 1), "val_ua": 0.3 + 0.05 * e} for e in range(epochs)]
            runs.append({"fold": fold, "seed": seed, "labelled_fraction": 1.0, "metrics": {}, "history": history,
                         "predictions": predictions, "extras": dict(extras or {})})
    ckpt = root / "checkpoints" / model / "demo"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "runs.json").write_text(json.dumps({"model": model, "corpus": "demo", "config": {}, "classes": CLASSES,
                                                "runs": runs}))
    curves = root / "plots" / "curves" / model / "demo.csv"
    curves.parent.mkdir(parents=True, exist_ok=True)
    with open(curves, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["epoch", "train_loss", "val_ua"])
        for e in range(epochs):
            writer.writerow([e, f"{1.5 / (e + 1):.6g}", f"{0.3 + 0.05 * e + len(model) / 100:.6g}"])
    if embeddings:
        n = 30
        labels = np.arange(n) % 4
        centres = rng.normal(0, 5, (4, 16))
        target = centres[labels] + rng.normal(0, 1, (n, 16))
        torch.save({"best_epoch": 3, "embeddings": {
            "imagined": (target + rng.normal(0, 0.5, (n, 16))).astype(np.float32),
            "target": target.astype(np.float32), "labels": labels,
            "conditions": ["azz"] * n, "utt_ids": [f"u{i}" for i in range(n)]}}, ckpt / "extras.pt")


def write_lock(root: Path, models: list[str]) -> None:
    stages = {"prepare@demo": {"cmd": "affectflow prepare demo", "outs": [{"path": "data/demo", "md5": "x.dir"}]}}
    for model in models:
        deps = [{"path": p, "hash": "md5", "md5": m, "size": 1} for p, m in sorted(MD5.items())]
        stages[f"train@{model}-demo"] = {
            "cmd": f"affectflow train {model} demo", "deps": deps,
            "params": {"params.yaml": {f"models.{model}": {"lr": 0.0002}}},
            "outs": [{"path": f"metrics/{model}/demo.json", "hash": "md5", "md5": "f" * 32, "size": 1},
                     {"path": f"checkpoints/{model}/demo", "hash": "md5", "md5": "e" * 32 + ".dir"}]}
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}, sort_keys=True))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    pooled = CONDITIONS[:6] + ("avl",)
    write_model(root, "utt_fusion", "utt_fusion", condition_block(0.50, CONDITIONS), prediction_conditions=pooled)
    write_model(root, "mmin", "mmin", condition_block(0.60, CONDITIONS), prediction_conditions=pooled,
                embeddings=True)
    write_model(root, "mmgcn", "mmgcn", {"avl": {"weighted_f1": stat(0.66221, 0.012), "wa": stat(0.67, 0.01)}},
                extras={"test_selected_weighted_f1": 0.70})
    write_model(root, "mmgcn_nograph", "mmgcn",
                {"avl": {"weighted_f1": stat(0.61, 0.02), "wa": stat(0.67004, 0.03)}},
                extras={"test_selected_weighted_f1": 0.64})
    sweep = {f: {"conditions": {"avl": {"ua": stat(u, 0.01)}}} for f, u in (("0.1", 0.40), ("0.3", 0.55), ("1", 0.7))}
    write_model(root, "ssmm", "ssmm", {"avl": {"ua": stat(0.7, 0.01)}}, sweep=sweep)
    sup = {f: {"conditions": {"avl": {"ua": stat(u, 0.02)}}} for f, u in (("0.1", 0.35), ("0.3", 0.52), ("1", 0.7))}
    write_model(root, "ssmm_supervised", "ssmm", {"avl": {"ua": stat(0.7, 0.02)}}, sweep=sup)
    write_lock(root, ["utt_fusion", "mmgcn", "mmgcn_nograph", "ssmm", "ssmm_supervised"])  # mmin: not in lock
    return root


@pytest.fixture(scope="module")
def report(project: Path):
    return build_report(project, CONFIG)


def table_rows(markdown: str, title: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index(f"### {title}") + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_conditions_table_cells_and_bold(report) -> None:
    rows = table_rows(report.markdown, "MMIN family: UA/WA per test condition")
    assert rows[0] == "| Metric | Model | {a} | {v} | {t} | {a,v} | {a,t} | {v,t} | Average | {a,v,t} |"
    assert rows[1] == "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert len(rows) == 2 + 4  # WA block (2 models) + UA block (2 models); mmin_ae was not run
    # utt_fusion WA at {a}: 0.50 + 0/100 - 0.05; mmin is better everywhere, so mmin's cells are bold
    assert rows[2].startswith("| WA | utt_fusion | 0.4500 ± 0.0100 | 0.4600 ± 0.0100 |")
    assert rows[3].startswith("| WA | mmin | **0.5500 ± 0.0100** | **0.5600 ± 0.0100** |")
    assert rows[4] == ("| UA | utt_fusion | 0.5000 ± 0.0200 | 0.5100 ± 0.0210 | 0.5200 ± 0.0220 | 0.5300 ± 0.0230 | "
                       "0.5400 ± 0.0240 | 0.5500 ± 0.0250 | 0.5600 ± 0.0260 | 0.5700 ± 0.0270 |")
    assert rows[5].endswith("| **0.6600 ± 0.0260** | **0.6700 ± 0.0270** |")


def test_full_table_extras_metric_and_rounded_tie(report) -> None:
    rows = table_rows(report.markdown, "MMGCN: weighted F1")
    assert rows[0] == "| Model | Weighted F1 | WA | test_selected_weighted_f1 |"
    # WA 0.67004 vs 0.67: equal as shown, so both bold; the test-selected figure comes from the runs' extras
    assert rows[2] == "| no graph | 0.6100 ± 0.0200 | **0.6700 ± 0.0300** | 0.6400 ± 0.0000 |"
    assert rows[3] == "| MMGCN | **0.6622 ± 0.0120** | **0.6700 ± 0.0100** | **0.7000 ± 0.0000** |"


def test_sweep_table(report) -> None:
    rows = table_rows(report.markdown, "SSMM: UA by labelled fraction")
    assert rows[0] == "| Model | 0.1 | 0.3 | 1 |"
    assert rows[2] == "| ssmm_supervised | 0.3500 ± 0.0200 | 0.5200 ± 0.0200 | **0.7000 ± 0.0200** |"
    assert rows[3] == "| ssmm | **0.4000 ± 0.0100** | **0.5500 ± 0.0100** | **0.7000 ± 0.0100** |"


def test_provenance_and_missing_models(report) -> None:
    md = report.markdown
    assert ("- utt_fusion (`utt_fusion`): speaker protocol, 2 folds × 2 seeds (0, 1); feature stores "
            "features/demo/bert.h5 (md5 22222222), features/demo/compare.h5 (md5 01234567), "
            "features/demo/denseface.h5 (md5 11111111); code md5 ") in md5_lines(md)
    line = next(x for x in md.splitlines() if x.startswith("- utt_fusion (`utt_fusion`)"))
    assert line.endswith("(dvc.lock stage `train@utt_fusion-demo`)")
    # the code md5 covers exactly the code deps' (path, md5) lines
    import hashlib
    code = hashlib.md5("\n".join([f"models {MD5['models']}", f"pipeline/train.py {MD5['pipeline/train.py']}"])
                       .encode()).hexdigest()[:8]
    assert f"; code md5 {code}; params md5 " in line
    assert ("- mmin (`mmin`): speaker protocol, 2 folds × 2 seeds (0, 1); provenance unknown: no train stage in "
            "dvc.lock wrote metrics/mmin/demo.json") in md.splitlines()
    assert "- not run: mmin_ae (`mmin_ae`) on demo: no metrics/mmin_ae/demo.json" in md.splitlines()
    assert any("mmin_ae" in n for n in report.notes)


def md5_lines(md: str) -> str:
    return "\n".join(x for x in md.splitlines() if x.startswith("- "))


def test_group_rows_by_model_and_missing_corpus(project: Path) -> None:
    cfg = copy.deepcopy(CONFIG)
    cfg["group_rows_by"] = "model"
    cfg["corpora"] = ["demo", "iemocap"]
    cfg["tables"] = cfg["tables"][:1]  # fewer figures: this test is about the rows
    cfg["plots"]["tsne"]["models"] = []
    md = build_report(project, cfg).markdown
    rows = table_rows(md, "MMIN family: UA/WA per test condition")
    assert [r.split(" | ")[:2] for r in rows[2:]] == [["| utt_fusion", "WA"], ["| utt_fusion", "UA"],
                                                       ["| mmin", "WA"], ["| mmin", "UA"]]
    assert "## iemocap" in md
    assert "No results on iemocap for any model of this table." in md


def test_config_errors_name_the_key() -> None:
    cfg = copy.deepcopy(CONFIG)
    cfg["tables"][1]["kind"] = "bars"
    with pytest.raises(ConfigError, match=r"report.tables\[1\].kind must be one of"):
        check_report_config(cfg)
    cfg = copy.deepcopy(CONFIG)
    del cfg["plots"]["tsne"]["random_state"]
    with pytest.raises(ConfigError, match="report.plots.tsne.random_state is not set"):
        check_report_config(cfg)
    cfg = copy.deepcopy(CONFIG)
    cfg["tables"].append(dict(cfg["tables"][0]))
    with pytest.raises(ConfigError, match=r"repeats report.tables\[0\]"):
        check_report_config(cfg)


def test_malformed_metrics_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "metrics" / "mmin" / "demo.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"model": "mmin",\n "conditions": {,}}')
    with pytest.raises(ReportInputError, match=r"metrics/mmin/demo.json line 2: not valid JSON"):
        build_report(tmp_path, CONFIG)


def labelled(fig: Figure) -> bool:
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    has_title = bool(fig.get_suptitle()) or all(ax.get_title() for ax in axes)
    return bool(axes) and has_title and all(ax.get_xlabel() and ax.get_ylabel() and ax.get_title() for ax in axes)


def test_figures_are_titled_and_labelled(report) -> None:
    names = sorted(report.figures)
    assert names == sorted([
        "plots/demo/mmin-family-ua-wa-per-test-condition_bars.png",
        "plots/demo/mmin-family-ua-wa-per-test-condition_curves.png",
        "plots/demo/mmgcn-weighted-f1_curves.png",
        "plots/demo/ssmm-ua-by-labelled-fraction_sweep.png",
        "plots/demo/ssmm-ua-by-labelled-fraction_curves.png",
        "plots/demo/confusion_utt_fusion_avl.png", "plots/demo/confusion_utt_fusion_average.png",
        "plots/demo/confusion_mmin_avl.png", "plots/demo/confusion_mmin_average.png",
        "plots/demo/confusion_mmgcn_nograph_avl.png", "plots/demo/confusion_mmgcn_avl.png",
        "plots/demo/confusion_ssmm_supervised_avl.png", "plots/demo/confusion_ssmm_avl.png",
        "plots/demo/tsne_mmin.png"])
    for name, fig in report.figures.items():
        assert isinstance(fig, Figure)
        assert labelled(fig), name
        assert f"]({name})" in report.markdown
    bars = report.figures["plots/demo/mmin-family-ua-wa-per-test-condition_bars.png"].axes[0]
    assert [t.get_text() for t in bars.get_xticklabels()] == list(CONFIG["columns"].values())
    assert len(bars.patches) == 2 * 8  # two models x eight conditions
    tsne = report.figures["plots/demo/tsne_mmin.png"].axes[0]
    assert sum(len(c.get_offsets()) for c in tsne.collections) == 2 * 30  # imagined + ground truth
    pooled = report.figures["plots/demo/confusion_mmin_average.png"].axes[0]
    counts = [t.get_text() for t in pooled.texts]
    assert sum(int(t.split("(")[1].rstrip(")")) for t in counts) == 4 * 6 * 30  # 4 runs x 6 conditions x 30


def test_written_pngs_are_real_images_and_deterministic(project: Path, tmp_path: Path) -> None:
    report = write_report(project, CONFIG)
    out = project / "reports"
    assert (out / "results.md").read_text() == report.markdown
    first = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert len(first) == len(report.figures) + 1
    for rel in report.figures:
        with Image.open(out / rel) as img:
            assert img.format == "PNG"
            assert img.width >= 200 and img.height >= 200
            pixels = np.asarray(img.convert("L"), dtype=np.float64)
            assert pixels.std() > 5, rel  # not a uniform image
            assert len(np.unique(pixels)) > 20, rel
            assert not any(k in img.info for k in ("Software", "Creation Time")), img.info
    (out / "plots" / "demo" / "stale.png").write_bytes(b"old")
    write_report(project, CONFIG)
    second = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert second == first  # byte-identical, and the stale PNG is gone
    listed = list_plot_files(project, CONFIG)
    assert listed[:len(report.figures)] == sorted(f"reports/{r}" for r in report.figures)
    assert "plots/curves/mmin/demo.csv" in listed


def test_report_names_the_git_commit_only_when_the_code_is_committed(project: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    root = tmp_path / "repo"
    shutil.copytree(project, root)
    (root / "pipeline").mkdir()
    (root / "pipeline" / "train.py").write_text("# code\n")
    assert "Code: not a clean git checkout of pipeline/, models/" in build_report(root, CONFIG).markdown
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "code"], cwd=root, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    (root / "metrics" / "later.txt").write_text("an output changed since: the code is still the commit's\n")
    lines = build_report(root, CONFIG).markdown.splitlines()
    assert f"Code: git commit `{head}` (pipeline/, models/ as committed there) and the md5s below." in lines
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "outputs only"], cwd=root, check=True)  # HEAD moves, the code does not
    assert build_report(root, CONFIG).markdown.splitlines() == lines
    (root / "pipeline" / "train.py").write_text("# edited\n")
    assert head not in build_report(root, CONFIG).markdown
