"""The report's cross-corpus section (pipeline/report/cross.py): the target's table, the discriminator's accuracy,
the adaptation > source-only claim on paired runs, and the t-SNE by corpus before/after adaptation."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

from pipeline.report.stage import build_report
from tests.test_report import CONFIG

MODELS = {"In-corpus": "culture_in_corpus", "Source-only": "culture_source_only", "Adversarial": "culture_adv"}
UA = {"culture_in_corpus": 0.8, "culture_source_only": 0.5, "culture_adv": 0.6}


def write_cross_model(root: Path, model: str, protocol: str = "a_to_b") -> None:
    runs = [{"fold": f"fold0{f}", "seed": s, "metrics": {"avl": {"wa": UA[model], "ua": UA[model] + 0.01 * (f + s),
                                                                "macro_f1": UA[model] - 0.1}},
             "extras": {"culture_accuracy": 0.7}, "predictions": {}} for f in (1, 2) for s in (0, 1, 2)]
    ua = [r["metrics"]["avl"]["ua"] for r in runs]
    metrics = {"model": model, "corpus": protocol, "sources": ["a"], "target": "b", "folds": 2, "seeds": [0, 1, 2],
               "conditions": {"avl": {"wa": {"mean": UA[model], "std": 0.0},
                                      "ua": {"mean": float(np.mean(ua)), "std": float(np.std(ua))},
                                      "macro_f1": {"mean": UA[model] - 0.1, "std": 0.0}}}}
    if model != "culture_in_corpus":
        metrics["culture_accuracy"] = {"mean": 0.7, "std": 0.05}
    (root / "metrics" / model).mkdir(parents=True)
    (root / "metrics" / model / f"{protocol}.json").write_text(json.dumps(metrics))
    out = root / "checkpoints" / model / protocol
    out.mkdir(parents=True)
    (out / "runs.json").write_text(json.dumps({"model": model, "corpus": protocol, "classes": ["a", "b"],
                                               "runs": runs}))
    rng = np.random.default_rng(0)
    torch.save({"embeddings_source": torch.from_numpy(rng.normal(0, 1, (20, 6))),
                "embeddings_target": torch.from_numpy(rng.normal(2, 1, (15, 6)))}, out / "extras.pt")


def test_cross_section_table_claim_and_tsne(tmp_path: Path) -> None:
    for model in MODELS.values():
        write_cross_model(tmp_path, model)
    cfg = copy.deepcopy(CONFIG)
    cfg["plots"]["tsne"] = {"models": [], "perplexity": 5, "random_state": 0, "max_points": 40}
    cfg["claims"] = {"bootstrap": {"resamples": 200}, "orderings": [
        {"better": "culture_adv", "worse": "culture_source_only", "metric": "ua", "condition": "avl", "paper": "p"},
        {"better": "mmin", "worse": "utt_fusion", "metric": "ua", "condition": "average", "paper": "q"}]}
    cfg["cross"] = {"protocols": ["a_to_b"], "models": MODELS, "metrics": ["wa", "ua", "macro_f1"],
                    "tsne": {"before": "culture_source_only", "after": "culture_adv"}}
    report = build_report(tmp_path, cfg)
    md = report.markdown
    assert "## Cross-corpus: a_to_b" in md
    row = next(line for line in md.splitlines() if line.startswith("| Adversarial"))
    assert "2 × 3" in row and "0.6000 ± 0.0000" in row and "0.7000 ± 0.0500" in row
    in_corpus = next(line for line in md.splitlines() if line.startswith("| In-corpus"))
    assert in_corpus.endswith("| — |")  # no discriminator
    assert "| culture_adv > culture_source_only |" in md and "on a_to_b not tested" not in md
    assert "culture_adv beat culture_source_only in 6 of 6 paired runs (mean difference +0.1000)" in md
    assert "plots/a_to_b/tsne_corpus.png" in report.figures
