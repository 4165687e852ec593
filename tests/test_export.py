"""`affectflow export`: our stores and splits in the layouts of the authors' MMIN and MMGCN code, read back with
h5py / numpy / pickle as that code reads them; the MMGCN inputs built from the export equal those built from the
stores (issue 9)."""

from __future__ import annotations

import argparse
import copy
import json
import pickle
import pickletools
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from models.data import MODALITIES
from models.mmgcn import build_model
from pipeline.export import (
    MARKER,
    MMGCN_ITEMS,
    ExportError,
    export_mmgcn,
    export_mmin,
    read_mmgcn_export,
    register,
)
from pipeline.manifest import CorpusInfo, Utterance, read_manifest, write_manifest
from pipeline.splits import build_splits, write_splits
from pipeline.store import FeatureStore, StoreWriter, UtteranceFeatures
from pipeline.train import PIPELINE_KEYS, load_utterances, model_config
from tests.trimmed_params import without_cross_corpus

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["ang", "hap", "neu", "sad"]
DIMS = {"compare": 130, "denseface": 5, "bert": 7}
EXTRACTOR = {"audio": "compare", "visual": "denseface", "text": "bert"}
CONSTANT_AUDIO_DIM = 3  # the same value in every frame: its std is 0 and must be written as 1
EXPORT = {  # the params block the lead puts in params.yaml
    "mmin": {"model": "mmin", "protocol": "speaker",
             "files": {"audio": "comparE", "visual": "denseface", "text": "bert_large"},
             "mean_std": "comparE_mean_std", "missing": "zero_row", "valid_frames_only": True,
             "config_file": "IEMOCAP_config.json"},
    "mmgcn": {"model": "mmgcn", "protocol": "dialogue", "fold": 0, "file": "IEMOCAP_features.pkl",
              "speakers": "onehot", "layout": "iemocap", "pickle_protocol": 4},
}


def speaker_of(session: int, dialogue: int, turn: int, third_speaker: bool) -> str:
    """Two speakers per session taking turns; with `third_speaker`, a third one speaks on every fifth turn of
    dialogue 1 of session 0."""
    if third_speaker and session == 0 and dialogue == 1 and turn % 5 == 4:
        return "s0X"
    return f"s{session}{'FM'[turn % 2]}"


def tiny_corpus(root: Path, third_speaker: bool = True) -> list[Utterance]:
    """2 sessions x 3 dialogues of 9 turns, IEMOCAP-like ids (`<dialogue>_<speaker><n>`: sorted order is not turn
    order); every 6th utterance unlabelled; faces missing or with invalid frames; one empty transcript."""
    rng = np.random.default_rng(0)
    utts = []
    for s in range(2):
        for d in range(3):
            per_speaker: dict[str, int] = {}
            for t in range(9):
                spk = speaker_of(s, d, t, third_speaker)
                n = per_speaker[spk] = per_speaker.get(spk, -1) + 1
                k = len(utts)
                label = None if k % 6 == 5 else CLASSES[(k * 7 + d) % 4]
                utts.append(Utterance(utt_id=f"s{s}d{d}_{spk[-1]}{n:03d}", corpus="tiny", speaker=spk,
                                      session=f"s{s}", dialogue_id=f"s{s}d{d}", turn=t, text=f"words {k}",
                                      label=label))
    utts.sort(key=lambda u: u.utt_id)
    write_manifest(root / "data/tiny/manifest.jsonl", utts, CLASSES)
    CorpusInfo("tiny", CLASSES, "demo").write(root / "data/tiny/corpus.json")
    for name, dim in DIMS.items():
        writer = StoreWriter(root / f"features/tiny/{name}.h5", [u.utt_id for u in utts], dim, {"extractor": name},
                             frame_valid=name == "denseface")
        results = []
        for i, u in enumerate(utts):
            if (name == "denseface" and i % 7 == 3) or (name == "bert" and i == 10) or (name == "compare" and i == 4):
                results.append(UtteranceFeatures.missing("none", dim))
                continue
            centre = np.zeros(dim, np.float32)
            centre[CLASSES.index(u.label or "neu") % dim] = 2.0
            frames = (centre * (1 + i % 3) + rng.normal(0, 1 + 10 * (name == "compare"),
                                                        (int(rng.integers(2, 9)), dim))).astype(np.float32)
            valid = None
            if name == "compare":
                frames[:, CONSTANT_AUDIO_DIM] = 0.25
            if name == "denseface":
                valid = np.ones(len(frames), bool)
                valid[::3] = i % 2 == 0  # odd utterances lose every third frame
            results.append(UtteranceFeatures(frames, True, valid))
        for shard in writer.pending():
            writer.write_shard(shard, results[:len(shard.utt_ids)])
        writer.finalize()
    protocols = {"speaker": {"protocol": "speaker_folds", "val": "partner"},
                 "dialogue": {"protocol": "session_folds", "val": 0.5}}
    write_splits(root / "splits/tiny.json", build_splits("tiny", utts, CLASSES, protocols, [1.0], 0))
    return utts


def tiny_params(**mmgcn: object) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["corpora"] = {"tiny": {}}
    without_cross_corpus(params)
    params["export"] = copy.deepcopy(EXPORT)
    params["models"]["mmgcn"].update(mmgcn)
    return params


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    tiny_corpus(root)
    return root


def splits_of(project: Path) -> dict:
    return json.loads((project / "splits/tiny.json").read_text())


def stores_of(project: Path) -> dict[str, FeatureStore]:
    return {m: FeatureStore(project / f"features/tiny/{EXTRACTOR[m]}.h5") for m in MODALITIES}


# ------------------------------------------------------------------------------------------------------ MMIN

def test_mmin_layout_reads_back_as_the_authors_loader_reads_it(project: Path, tmp_path: Path) -> None:
    out = export_mmin(project, tiny_params(), "tiny", tmp_path / "mmin")
    folds = splits_of(project)["protocols"]["speaker"]["folds"]
    utts = {u.utt_id: u for u in read_manifest(project / "data/tiny/manifest.jsonl", CLASSES)}
    stores = stores_of(project)
    labelled = sorted(i for i, u in utts.items() if u.label is not None)
    config = json.loads((out / "IEMOCAP_config.json").read_text())
    assert config["total_cv"] == len(folds) == 5
    feature_root, target_root = Path(config["feature_root"]), Path(config["target_root"])
    assert feature_root == (out / "feature").resolve() and target_root == (out / "target").resolve()

    feats = {}
    for m, (letter, name) in {"audio": ("A", "comparE"), "visual": ("V", "denseface"),
                              "text": ("L", "bert_large")}.items():
        with h5py.File(feature_root / letter / f"{name}.h5", "r") as f:
            assert sorted(f.keys()) == labelled  # top-level datasets, labelled utterances only
            feats[m] = {k: f[k][()] for k in f.keys()}
        for utt_id, arr in feats[m].items():
            assert arr.dtype == np.float32 and arr.ndim == 2 and arr.shape[1] == stores[m].dim
            if stores[m].is_present(utt_id):
                np.testing.assert_array_equal(arr, stores[m].get(utt_id, valid_only=True))
            else:  # MMIN's release: one zero row for a modality without frames
                np.testing.assert_array_equal(arr, np.zeros((1, stores[m].dim), np.float32))
    assert all(a.shape[1] == 130 for a in feats["audio"].values())
    dropped = [u for u in labelled if len(stores["visual"].get(u)) != len(feats["visual"][u])]
    assert dropped, "the fixture must have invalid face frames, which the export drops"

    with h5py.File(feature_root / "A" / "comparE_mean_std.h5", "r") as f:
        assert sorted(f.keys(), key=int) == [str(k) for k in range(1, 6)]
        for k, fold in enumerate(folds, start=1):
            frames = np.concatenate([stores["audio"].get(i) for i in fold["train"]
                                     if stores["audio"].is_present(i)]).astype(np.float64)
            mean, std = frames.mean(0), frames.std(0)
            std[std == 0] = 1.0
            assert f[str(k)]["mean"].dtype == np.float32 and f[str(k)]["mean"].shape == (130,)
            np.testing.assert_allclose(f[str(k)]["mean"][()], mean, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(f[str(k)]["std"][()], std, rtol=1e-6)
            assert f[str(k)]["std"][CONSTANT_AUDIO_DIM] == 1.0
            everything = np.concatenate([feats["audio"][i] for i in labelled]).astype(np.float64)
            assert not np.allclose(everything.mean(0), mean, rtol=1e-3)  # training frames only

    for k, fold in enumerate(folds, start=1):
        for part, set_name in (("train", "trn"), ("val", "val"), ("test", "tst")):
            label = np.load(target_root / str(k) / f"{set_name}_label.npy")
            int2name = np.load(target_root / str(k) / f"{set_name}_int2name.npy")
            assert label.dtype == np.float32 and label.shape == (len(fold[part]), 4)
            assert np.all(label.sum(1) == 1) and set(np.unique(label)) == {0.0, 1.0}
            assert int2name.dtype.kind == "S" and int2name.shape == (len(fold[part]), 1)
            names = [row[0].decode() for row in int2name]  # what their __getitem__ does
            assert names == fold[part]
            assert [CLASSES[c] for c in np.argmax(label, axis=1)] == [utts[n].label for n in names]
    meta = json.loads((out / MARKER).read_text())
    assert meta["folds"] == {str(k): f["name"] for k, f in enumerate(folds, start=1)}


def test_mmin_one_fold_keeps_its_cvno_and_empty_missing(project: Path, tmp_path: Path) -> None:
    params = tiny_params()
    params["export"]["mmin"]["missing"] = "empty"
    out = export_mmin(project, params, "tiny", tmp_path / "one", fold="fold03")
    assert sorted(p.name for p in (out / "target").iterdir()) == ["3"]
    with h5py.File(out / "feature/A/comparE_mean_std.h5", "r") as f:
        assert list(f.keys()) == ["3"]
    fold = splits_of(project)["protocols"]["speaker"]["folds"][2]
    stores = stores_of(project)
    with h5py.File(out / "feature/V/denseface.h5", "r") as f:
        assert sorted(f.keys()) == sorted(fold["train"] + fold["val"] + fold["test"])
        absent = [k for k in f.keys() if not stores["visual"].is_present(k)]
        assert absent and all(f[k].shape == (0, 5) for k in absent)


def test_export_is_deterministic_and_refuses_foreign_directories(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    export_mmin(project, tiny_params(), "tiny", out)
    first = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    (out / "stale.txt").write_text("from an earlier export")
    export_mmin(project, tiny_params(), "tiny", out)
    second = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert first == second  # rebuilt whole: same bytes, nothing stale left
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an earlier affectflow export"):
        export_mmin(project, tiny_params(), "tiny", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".*partial"))


# ----------------------------------------------------------------------------------------------------- MMGCN

def test_mmgcn_pickle_has_the_nine_items_in_turn_order(project: Path, tmp_path: Path) -> None:
    path = export_mmgcn(project, tiny_params(), "tiny", tmp_path / "IEMOCAP_features")
    with open(path, "rb") as fh:
        items = pickle.load(fh, encoding="latin1")  # as their IEMOCAPDataset loads it
    assert isinstance(items, list) and len(items) == 9
    video = dict(zip(MMGCN_ITEMS, items, strict=True))
    fold = splits_of(project)["protocols"]["dialogue"]["folds"][0]
    utts = {u.utt_id: u for u in read_manifest(project / "data/tiny/manifest.jsonl", CLASSES)}
    meta = json.loads((path.parent / MARKER).read_text())
    assert meta["fold"] == fold["name"] and meta["items"] == list(MMGCN_ITEMS)

    train_ids, test_ids = fold["train"] + fold["val"], fold["test"]
    assert set(video["trainVid"]) == {utts[i].dialogue_id for i in train_ids}
    assert set(video["testVid"]) == {utts[i].dialogue_id for i in test_ids}
    assert set(meta["val_dialogues"]) == {utts[i].dialogue_id for i in fold["val"]}
    assert set(meta["val_dialogues"]) < set(video["trainVid"])
    exported = [u for d in video["videoIDs"].values() for u in d]
    assert sorted(exported) == sorted(train_ids + test_ids)  # labelled utterances only
    assert all(utts[u].label is not None for u in exported)

    stores = stores_of(project)
    for dialogue, ids in video["videoIDs"].items():
        turns = [utts[u].turn for u in ids]
        assert turns == sorted(turns) and ids != sorted(ids) or len(ids) < 3  # turn order, not id order
        assert video["videoLabels"][dialogue] == [CLASSES.index(utts[u].label) for u in ids]
        assert video["videoSentence"][dialogue] == [utts[u].text for u in ids]
        for item, m in (("videoAudio", "audio"), ("videoVisual", "visual"), ("videoText", "text")):
            vectors = video[item][dialogue]
            assert len(vectors) == len(ids)
            assert all(v.dtype == np.float32 and v.shape == (stores[m].dim,) for v in vectors)
        rows = video["videoSpeakers"][dialogue]
        assert all(len(r) == 3 and sum(r) == 1 for r in rows)  # width = most parties (s0d1 has three)
        first_seen: dict[str, int] = {}
        for u, row in zip(ids, rows, strict=True):
            assert row.index(1) == first_seen.setdefault(utts[u].speaker, len(first_seen))
    # the text vector of an utterance is its mean-pooled BERT frames (text is not standardised)
    some = next(u for u in exported if stores["text"].is_present(u))
    dialogue = utts[some].dialogue_id
    vector = video["videoText"][dialogue][video["videoIDs"][dialogue].index(some)]
    np.testing.assert_allclose(vector, stores["text"].get(some).mean(0), rtol=1e-5, atol=1e-6)
    # what their __getitem__ builds per dialogue
    assert torch.FloatTensor(np.stack(video["videoText"][dialogue])).shape == (len(video["videoIDs"][dialogue]), 7)
    assert torch.FloatTensor(video["videoSpeakers"][dialogue]).shape == (len(video["videoIDs"][dialogue]), 3)
    assert torch.LongTensor(video["videoLabels"][dialogue]).min() >= 0
    names = {arg for op, arg, _ in pickletools.genops(path.read_bytes()) if op.name == "SHORT_BINUNICODE"}
    assert not any(str(n).startswith("numpy.") for n in names)  # no numpy._core: loads under NumPy 1.x
    assert video["videoAudio"][dialogue][0].flags.writeable


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_mmgcn_inputs_from_the_export_equal_those_from_the_stores(project: Path, tmp_path: Path,
                                                                  pooling: str) -> None:
    """Issue 9: the tensors MMGCN is fed, once built as the train stage builds them from the stores and once from
    the exported pickle, are equal (features per channel, dialogue lengths, speaker rows, labels)."""
    params = tiny_params(pooling=pooling, standardize=["audio", "visual"])
    export_mmgcn(project, params, "tiny", tmp_path / "eq", fold=1)
    cfg = {k: v for k, v in model_config(params, "mmgcn", "tiny").items() if k not in PIPELINE_KEYS}
    cfg["n_classes"] = len(CLASSES)  # what the train stage hands the family

    # as pipeline/train.py does for fold 1 of the dialogue protocol: one set of every needed id, then subsets
    fold = splits_of(project)["protocols"]["dialogue"]["folds"][1]
    utts = {u.utt_id: u for u in read_manifest(project / "data/tiny/manifest.jsonl", CLASSES)}
    needed = sorted({i for part in ("train", "val", "test", "unlabelled") for i in fold[part]})
    data = load_utterances([utts[i] for i in needed], CLASSES, stores_of(project))
    position = {u: i for i, u in enumerate(data.utt_ids)}
    from_stores = [data.subset([position[i] for i in fold[p]]) for p in ("train", "val", "test")]

    exported = read_mmgcn_export(tmp_path / "eq")
    from_export = [exported[p] for p in ("train", "val", "test")]
    absent_faces = 0
    torch.manual_seed(0)
    model_a, sets_a, classes_a = build_model(*from_stores, cfg, torch.device("cpu"))
    model_b, sets_b, classes_b = build_model(*from_export, {**cfg, "standardize": []}, torch.device("cpu"))
    assert classes_a == classes_b and model_a.speaker_embedding.num_embeddings == 3
    assert model_a.speaker_embedding.num_embeddings == model_b.speaker_embedding.num_embeddings
    assert {k: p.shape for k, p in model_a.named_parameters()} == {k: p.shape for k, p in model_b.named_parameters()}
    for a, b in zip(sets_a, sets_b, strict=True):
        batch_a, batch_b = a.batch(range(len(a))), b.batch(range(len(b)))
        assert batch_a.lengths == batch_b.lengths
        assert [a.uset.utt_ids[i] for i in batch_a.positions] == [b.uset.utt_ids[i] for i in batch_b.positions]
        assert torch.equal(batch_a.speakers, batch_b.speakers) and torch.equal(batch_a.labels, batch_b.labels)
        assert sorted(batch_a.features) == sorted(batch_b.features) == ["audio", "text", "visual"]
        for channel in batch_a.features:
            assert torch.equal(batch_a.features[channel], batch_b.features[channel]), channel
        absent = a.uset.visual.lengths[batch_a.positions] == 0
        assert bool((batch_b.features["visual"][absent] == 0).all())  # a missing face stays zero
        absent_faces += int(absent.sum())
    assert absent_faces > 0


def test_mmgcn_letters_meld_layout_and_whole_dialogues(project: Path, tmp_path: Path) -> None:
    params = tiny_params()
    params["export"]["mmgcn"]["speakers"] = "letters"
    with pytest.raises(ExportError, match="letters encodes 2 parties, but a dialogue of tiny has 3"):
        export_mmgcn(project, params, "tiny", tmp_path / "letters")
    params["export"]["mmgcn"].update(speakers="onehot", layout="meld", file="MELD_features_raw1.pkl")
    path = export_mmgcn(project, params, "tiny", tmp_path / "meld", fold="fold02")
    items = pickle.loads(path.read_bytes())
    meta = json.loads((path.parent / MARKER).read_text())
    assert len(items) == 10 and items[9] == meta["val_dialogues"] and meta["fold"] == "fold02"
    with pytest.raises(ExportError, match=r"puts dialogue 's0d\d' in both"):
        export_mmgcn(project, tiny_params(), "tiny", tmp_path / "spk", protocol="speaker")
    with pytest.raises(ExportError, match="no fold 9"):
        export_mmgcn(project, tiny_params(), "tiny", tmp_path / "nine", fold=9)


def test_letters_when_every_dialogue_has_two_parties(tmp_path: Path) -> None:
    root = tmp_path / "two"
    assert len({u.speaker for u in tiny_corpus(root, third_speaker=False)}) == 4
    params = tiny_params()
    params["export"]["mmgcn"]["speakers"] = "letters"
    path = export_mmgcn(root, params, "tiny", tmp_path / "out")
    video = dict(zip(MMGCN_ITEMS, pickle.loads(path.read_bytes()), strict=True))
    speakers = {s for rows in video["videoSpeakers"].values() for s in rows}
    assert speakers == {"M", "F"} and all(rows[0] == "M" for rows in video["videoSpeakers"].values())


# ------------------------------------------------------------------------------------------------------- CLI

def test_cli_registration_runs_the_export(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser(prog="affectflow")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", "mmgcn", "tiny", "--out", str(tmp_path / "cli"), "--fold", "fold02"])
    assert (args.layout, args.corpus, args.fold, args.protocol) == ("mmgcn", "tiny", "fold02", None)
    monkeypatch.chdir(project)
    args.handler(args, tiny_params())
    assert json.loads((tmp_path / "cli" / MARKER).read_text())["fold"] == "fold02"
    args = parser.parse_args(["export", "mmin", "tiny", "--out", str(tmp_path / "cli1"), "--fold", "0"])
    args.handler(args, tiny_params())
    assert sorted(p.name for p in (tmp_path / "cli1/target").iterdir()) == ["1"]
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "mmin", "tiny"])  # --out is required
