"""The train stage end to end on a tiny generated corpus: stores + split -> every family -> metrics, checkpoints,
curves; deterministic; the same with parallel runs; finetuning needs its source checkpoints."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.manifest import CorpusInfo, Utterance, write_manifest
from pipeline.params import ConfigError
from pipeline.splits import build_splits, write_splits
from pipeline.store import StoreWriter, UtteranceFeatures
from pipeline.train import train_model
from tests.trimmed_params import without_cross_corpus

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["ang", "hap", "neu", "sad"]
DIMS = {"compare": 6, "denseface": 5, "bert": 7}
FAST = {
    "utt_fusion": {"epochs_constant": 1, "epochs_decay": 1, "batch_size": 16,
                   "frames": {"audio": 6, "visual": 6, "text": 6}},
    "mmin": {"epochs_constant": 1, "epochs_decay": 1, "batch_size": 16, "init": "pytorch",
             "frames": {"audio": 6, "visual": 6, "text": 6}},
    "mmgcn": {"epochs": 2, "batch_dialogues": 2, "layers": 2},
    "ssmm": {"epochs": 3, "warmup_epochs": 1, "batch_size": 16, "hidden": [16], "latent": 8,
             "classifier_hidden": [8]},
}


def tiny_corpus(root: Path) -> None:
    """2 sessions x 2 speakers, 4 dialogues of 10 turns; features carry the label plus noise."""
    rng = np.random.default_rng(0)
    utts = []
    for s in range(2):
        for d in range(2):
            for t in range(10):
                k = len(utts)
                label = None if k % 9 == 0 else CLASSES[k % 4]
                utts.append(Utterance(utt_id=f"s{s}d{d}_{t:02d}", corpus="tiny", speaker=f"s{s}{'FM'[t % 2]}",
                                      session=f"s{s}", dialogue_id=f"s{s}d{d}", turn=t, text="x", label=label))
    write_manifest(root / "data/tiny/manifest.jsonl", utts, CLASSES)
    CorpusInfo("tiny", CLASSES, "demo").write(root / "data/tiny/corpus.json")
    for name, dim in DIMS.items():
        writer = StoreWriter(root / f"features/tiny/{name}.h5", [u.utt_id for u in utts], dim, {"extractor": name})
        results = []
        for i, u in enumerate(utts):
            if name == "denseface" and i % 7 == 3:
                results.append(UtteranceFeatures.missing("no_face", dim))
                continue
            centre = np.zeros(dim, np.float32)
            centre[CLASSES.index(u.label or "neu") % dim] = 2.0
            frames = centre + rng.normal(0, 1, (int(rng.integers(2, 8)), dim)).astype(np.float32)
            results.append(UtteranceFeatures(frames, True))
        for shard in writer.pending():
            writer.write_shard(shard, results[:len(shard.utt_ids)])
        writer.finalize()
    protocols = {"speaker": {"protocol": "speaker_folds", "val": "partner"},
                 "dialogue": {"protocol": "session_folds", "val": 0.5}}
    write_splits(root / "splits/tiny.json", build_splits("tiny", utts, CLASSES, protocols, [0.5, 1.0], 0))


def tiny_params(workers: int = 1) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(seeds=[0, 1], folds=[0, 1], threads=1, workers=workers)
    for cfg in params["models"].values():
        cfg.update(copy.deepcopy(FAST.get(cfg["family"], {})))  # culture: trained on cross_corpus protocols only
        if cfg["family"] == "ssmm":
            cfg["labelled_fractions"] = [0.5, 1.0]
    params["corpora"] = {"tiny": {}}
    without_cross_corpus(params)
    return params


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tiny_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_family_writes_metrics_checkpoints_and_curves(project: Path) -> None:
    params = tiny_params()
    for model in ("utt_fusion", "mmin", "mmgcn", "ssmm"):
        metrics = train_model(params, model, "tiny")
        assert metrics["model"] == model and metrics["folds"] == 2 and metrics["seeds"] == [0, 1]
        saved = json.loads((project / f"metrics/{model}/tiny.json").read_text())
        assert saved == json.loads(json.dumps(metrics))
        for stat in saved["conditions"]["avl"].values():
            assert 0.0 <= stat["mean"] <= 1.0 and stat["std"] >= 0.0
        runs = json.loads((project / f"checkpoints/{model}/tiny/runs.json").read_text())
        assert runs["classes"] == CLASSES
        curves = (project / f"plots/curves/{model}/tiny.csv").read_text().splitlines()
        assert curves[0].startswith("epoch,") and len(curves) >= 3
    mmin = json.loads((project / "metrics/mmin/tiny.json").read_text())
    assert set(mmin["conditions"]) == {"azz", "zvz", "zzl", "avz", "azl", "zvl", "avl", "average"}
    assert sorted(p.name for p in (project / "checkpoints/utt_fusion/tiny").glob("*.pt")) == [
        "fold01_seed0.pt", "fold01_seed1.pt", "fold02_seed0.pt", "fold02_seed1.pt"]
    assert "embeddings" in torch.load(project / "checkpoints/mmin/tiny/extras.pt", weights_only=True)
    ssmm = json.loads((project / "metrics/ssmm/tiny.json").read_text())
    assert set(ssmm["sweep"]["labelled_fraction"]) == {"0.5", "1"}
    ssmm_runs = json.loads((project / "checkpoints/ssmm/tiny/runs.json").read_text())["runs"]
    assert len(ssmm_runs) == 8 and {r["labelled_fraction"] for r in ssmm_runs} == {0.5, 1.0}


def test_runs_are_deterministic_and_parallel_runs_match(project: Path) -> None:
    train_model(tiny_params(), "utt_fusion", "tiny")
    first = {p: (project / p).read_bytes() for p in ("metrics/utt_fusion/tiny.json",
                                                      "checkpoints/utt_fusion/tiny/runs.json",
                                                      "plots/curves/utt_fusion/tiny.csv")}
    train_model(tiny_params(), "utt_fusion", "tiny")
    assert all((project / p).read_bytes() == b for p, b in first.items())
    train_model(tiny_params(workers=2), "utt_fusion", "tiny")
    assert all((project / p).read_bytes() == b for p, b in first.items())


def test_finetune_needs_the_source_checkpoints(project: Path) -> None:
    with pytest.raises(ConfigError, match="checkpoints/utt_fusion/tiny/fold01_seed0.pt does not exist"):
        train_model(tiny_params(), "mmin", "tiny")


def test_configuration_errors_name_the_key(project: Path) -> None:
    params = tiny_params()
    params["models"]["utt_fusion"]["protocol"] = "nope"
    with pytest.raises(ConfigError, match="models.utt_fusion.protocol 'nope'"):
        train_model(params, "utt_fusion", "tiny")
    params = tiny_params()
    params["train"]["folds"] = [7]
    with pytest.raises(ConfigError, match="no fold 7"):
        train_model(params, "utt_fusion", "tiny")
