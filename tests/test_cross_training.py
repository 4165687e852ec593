"""The cross-corpus split stage and training over several corpora's stores (pipeline/cross_corpus.py
split_cross_corpus, pipeline/cross_training.py), on generated stores of two corpora whose local ids coincide."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cross_training import CrossStoreError, train_cross
from pipeline.params import load_params
from pipeline.splits import split_corpus
from pipeline.store import StoreWriter, UtteranceFeatures
from pipeline.train import train_model
from tests.dataset_fixtures import CLASSES, REPO, write_project

TINY = {"batch_size": 16, "epochs_constant": 1, "epochs_decay": 1, "frames": {"audio": 8, "visual": 8, "text": 8},
        "encoder": {"audio_hidden": 8, "visual_hidden": 8, "text_embedding": 8, "text_filters": 4,
                    "text_kernel_heights": [3, 4, 5], "text_dropout": 0.5, "pool_over_padding": True},
        "classifier_hidden": [8], "discriminator_hidden": [8]}
MODELS = ("culture_in_corpus", "culture_source_only", "culture_adv")


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    src = write_project(tmp_path, "src", sessions=2, dialogues=2, turns=10, seed=0, params=False)
    tgt = write_project(tmp_path, "tgt", sessions=2, dialogues=2, turns=10, seed=1, params=False)
    assert {u.utt_id for u in src} & {u.utt_id for u in tgt}  # the same local ids: only qualification parts them
    monkeypatch.chdir(tmp_path)
    params = load_params(REPO / "params.yaml")
    params["corpora"].update({c: {"adapter": "demo", "root": f"data/{c}/raw"} for c in ("src", "tgt")})
    identity = {c: c for c in CLASSES}
    params["cross_corpus"] = {"src_to_tgt": {
        "sources": ["src"], "target": "tgt", "classes": ["ang", "hap", "sad"],
        "mapping": {"src": {"ang": "ang", "hap": "hap", "sad": "sad"}, "tgt": {**identity, "neu": "sad"}},
        "target_folds": 3, "source_val": 0.5,
        "train": {"folds": [0], "seeds": [0], "threads": 1, "models": dict.fromkeys(MODELS, TINY)}}}
    return params


def test_split_file_records_the_protocol_and_never_mixes_source_and_target(project: dict) -> None:
    out = split_corpus(project, "src_to_tgt")
    split = json.loads(out.read_text())
    assert out == Path("splits/src_to_tgt.json")
    assert split["sources"] == ["src"] and split["target"] == "tgt" and split["cultures"] == {"src": 0, "tgt": 1}
    assert set(split["dropped"]["src"]) == {"neu"} and split["dropped"]["src"]["neu"] > 0
    assert split["dropped"]["tgt"] == {}
    assert split["mapping"]["tgt"]["neu"] == "sad"
    for fold in split["folds"]:
        source = set(fold["train"]) | set(fold["val"])
        target = set(fold["test"]) | set(fold["adaptation"])
        assert not source & target
        assert all(i.startswith("src/") for i in source) and all(i.startswith("tgt/") for i in target)
        assert fold["in_corpus"]["train"] and not set(fold["in_corpus"]["train"]) & set(fold["test"])


def test_three_culture_models_train_over_both_corpora(project: dict) -> None:
    split_corpus(project, "src_to_tgt")
    for model in MODELS:
        metrics = train_model(project, model, "src_to_tgt")
        assert metrics["target"] == "tgt" and 0.0 <= metrics["conditions"]["avl"]["ua"]["mean"] <= 1.0
        assert ("culture_accuracy" in metrics) == (model != "culture_in_corpus")
        runs = json.loads(Path(f"checkpoints/{model}/src_to_tgt/runs.json").read_text())
        assert [(r["fold"], r["seed"]) for r in runs["runs"]] == [("fold01", 0)]
        assert Path(f"metrics/{model}/src_to_tgt.json").is_file()
    assert Path("checkpoints/culture_adv/src_to_tgt/extras.pt").is_file()


def test_two_target_folds_leave_the_upper_bound_nothing_and_are_refused(project: dict) -> None:
    from pipeline.cross_corpus import CrossCorpusError

    project["cross_corpus"]["src_to_tgt"]["target_folds"] = 2
    with pytest.raises(CrossCorpusError, match="at least 3"):
        split_corpus(project, "src_to_tgt")


def test_stores_of_another_width_fail_naming_both(project: dict) -> None:
    split_corpus(project, "src_to_tgt")
    ids = json.loads(Path("splits/src_to_tgt.json").read_text())["labels"]
    local = sorted({i.split("/", 1)[1] for i in ids if i.startswith("tgt/")} |
                   {u.split("/", 1)[1] for f in json.loads(Path("splits/src_to_tgt.json").read_text())["folds"]
                    for u in f["adaptation"]})
    Path("features/tgt/bert.h5").unlink()
    writer = StoreWriter(Path("features/tgt/bert.h5"), local, 5, {"extractor": "bert"})
    for shard in writer.pending():
        writer.write_shard(shard, [UtteranceFeatures.missing("empty_transcript", 5) for _ in shard.utt_ids])
    writer.finalize()
    with pytest.raises(CrossStoreError, match=r"features/src/bert.h5.*features/tgt/bert.h5"):
        train_cross(project, "culture_adv", "src_to_tgt")


def test_two_workers_write_the_same_bytes_as_one(project: dict) -> None:
    """The runs of a culture model in a pool of 2 spawned workers: the same checkpoints, runs.json, embeddings and
    metrics as in one process, in the same order."""
    import shutil

    split_corpus(project, "src_to_tgt")
    train = project["cross_corpus"]["src_to_tgt"]["train"]
    train.update(folds=[0, 1], seeds=[0, 1])

    def outputs() -> dict[str, bytes]:
        files = [*Path("checkpoints/culture_adv/src_to_tgt").iterdir(), Path("metrics/culture_adv/src_to_tgt.json")]
        return {p.name: p.read_bytes() for p in sorted(files)}

    train["workers"] = 1
    train_model(project, "culture_adv", "src_to_tgt")
    one = outputs()
    shutil.rmtree("checkpoints/culture_adv")
    train["workers"] = 2
    train_model(project, "culture_adv", "src_to_tgt")
    assert len(one) == 7 and "extras.pt" in one  # 4 runs, extras, runs.json, metrics
    assert outputs() == one
