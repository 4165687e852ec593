"""Export our features and splits in the layouts the authors' original code reads, so a lab can run that code on
our features beside our reimplementations (`affectflow export mmin|mmgcn <corpus> --out DIR`).

MMIN (AIM3-RUC/MMIN, `data/multimodal_miss_dataset.py`, IEMOCAP style):
  `<out>/feature/{A,V,L}/<name>.h5`   one float32 (T, D) dataset per utterance id at the top level, the frames the
                                      store holds (frames an extractor marked invalid dropped, as our loader does);
                                      a modality without frames is one zero row (MMIN's release) or (0, D)
  `<out>/feature/A/<mean_std>.h5`     group "1".."K" (their cvNo is 1-based: cvNo = fold index + 1) with `mean`
                                      and `std` (D,) float32 over the fold's training frames, std 0 -> 1
  `<out>/target/<cvNo>/{trn,val,tst}_label.npy`    one-hot float32 (N, C), classes in the corpus's order
  `<out>/target/<cvNo>/{trn,val,tst}_int2name.npy` (N, 1) bytes (`|S`): their loader does `x[0].decode()`
  `<out>/<config_file>`               feature_root / target_root / total_cv, as their data/config/*_config.json
Only the labelled utterances of each part are written (the split file's parts hold no others).

MMGCN (the DialogueRNN-style pickle that MMGCN's IEMOCAPDataset / MELDDataset load with
`pickle.load(f, encoding='latin1')`): the 9 items videoIDs, videoSpeakers, videoLabels, videoText, videoAudio,
videoVisual, videoSentence, trainVid, testVid (layout `meld` appends a 10th, the validation dialogue ids, which
MELDDataset unpacks and ignores). Dicts are keyed by dialogue id, utterances in turn order. The per-utterance
vectors are exactly our MMGCN's inputs: the stores loaded as the train stage loads them, then
`models.mmgcn.pooled_vectors` (pooling and standardisation of `models.<model>`, statistics from the fold's
training part). Speakers are one-hot party vectors (party = order of first appearance within the dialogue, as
`models.mmgcn.speaker_indices` numbers them; width = the most parties in any exported dialogue). IEMOCAPDataset
maps 'M' -> [1, 0] and anything else -> [0, 1] itself, so for it choose `speakers: letters` (party 0 -> 'M',
party 1 -> 'F', the width-2 case; more parties are an error); MELDDataset takes the one-hot rows as they are.
trainVid holds the training and validation dialogues (their code has no validation set); the validation ids are
listed in `<out>/affectflow_export.json`. Utterances without a label are not exported: the split's parts hold only
labelled utterances, our MMGCN builds its dialogues from those parts, and the authors' loss has no ignore index.

Arrays in the pickle are written as `numpy.array(numpy.frombuffer(bytes, '<f4'), 'float32')` rather than with
NumPy's own reducer, whose module path (`numpy._core` since NumPy 2) does not exist in the NumPy 1.x the authors'
code runs under.

MMSA (thuiar/MMSA, `MMDataLoader` with `need_data_aligned: false`): one pickle, a dict with `train`, `valid` and
`test` (one fold's parts), each a dict of `id` and `raw_text` (lists), `audio`, `vision`, `text` (float32 (N, T, D),
zero-padded to the longest sequence of that modality over the three parts, or to `export.mmsa.max_frames`),
`audio_lengths` and `vision_lengths` (lists of int), `classification_labels` (float32 class indices, classes in
the corpus's order), `regression_labels` (float32: the class index, or the valence with `regression: valence`)
and `annotations` (class names). A modality missing for an utterance is one zero frame of length 1 (their models
pack sequences, which refuses length 0). `text` holds our text store's frames: run their models with
`use_bert: false` (`text_bert`, BERT token ids, is not written).

MERTools (zeroQiaoba/MERTools, MERBench's `Data_Feat` and dataset loaders): `<out>/features/<name>/<utt_id>.npy`,
one folder per modality named by `export.mertools.features` (their `--audio_feature` / `--text_feature` /
`--video_feature`), float32 (T, D) frames (`level: frame`, for their `frm_unalign`/`frm_align` models) or the
(D,) mean over the frames (`level: utterance`, for `feat_type: utt`); a missing modality is one zero frame or
vector (their reader refuses an empty array). `<out>/label.npz` holds `train_corpus`, `val_corpus`, `test_corpus`
(one fold) and `whole_corpus` (the three together), each a dict utt_id -> {"emo": class index, "val": valence, or
-10 as their IEMOCAP conversion writes when there is none}, read with `np.load(path, allow_pickle=True)[key]
.tolist()` as their MELD loader does. Set their `config.PATH_TO_FEATURES` / `PATH_TO_LABEL` to `<out>/features`
and `<out>/label.npz`.

Every export writes `<out>/affectflow_export.json` (what was exported, from which stores and split). An output
directory is rebuilt whole in a staging directory and then swapped in; a non-empty directory without that file is
never overwritten.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm import tqdm

from models.data import MODALITIES, Sequences, UtteranceSet
from models.mmgcn import pooled_vectors, speaker_indices
from pipeline.layout import corpus_info_path, manifest_path, split_path, store_path
from pipeline.manifest import CorpusInfo, Utterance, read_manifest
from pipeline.params import ConfigError, lookup
from pipeline.splits import load_splits
from pipeline.store import FeatureStore
from pipeline.train import load_utterances, model_config

log = logging.getLogger(__name__)

MARKER = "affectflow_export.json"
PARTS = ("train", "val", "test")
MMIN_SETS = {"train": "trn", "val": "val", "test": "tst"}  # their set_name per part
MMIN_DIRS = {"audio": "A", "visual": "V", "text": "L"}
MMGCN_ITEMS = ("videoIDs", "videoSpeakers", "videoLabels", "videoText", "videoAudio", "videoVisual",
               "videoSentence", "trainVid", "testVid")
LETTERS = ("M", "F")


class ExportError(ConfigError):
    """An export that cannot be written as asked (a protocol that splits dialogues, a foreign output directory)."""


# ------------------------------------------------------------------------------------------------ inputs

def export_config(params: dict[str, Any], kind: str) -> dict[str, Any]:
    """The `export.<kind>` block of params, checked by its typed configuration (pipeline/schema.py)."""
    from pipeline.schema import EXPORT_CONFIGS
    from pipeline.typed_config import parse

    config = lookup(params, f"export.{kind}")
    parse(EXPORT_CONFIGS[kind], config, f"export.{kind}", str(params.get("_path", "params.yaml")))
    return config


def _corpus(root: Path, corpus: str) -> tuple[CorpusInfo, dict[str, Utterance], dict[str, Any]]:
    info = CorpusInfo.read(root / corpus_info_path(corpus))
    utts = {u.utt_id: u for u in read_manifest(root / manifest_path(corpus), info.classes)}
    splits = load_splits(root / split_path(corpus))
    return info, utts, splits


def _protocol(splits: dict[str, Any], name: str, corpus: str) -> dict[str, Any]:
    if name not in splits["protocols"]:
        raise ExportError(f"protocol {name!r} is not in splits/{corpus}.json (it has {sorted(splits['protocols'])})")
    return splits["protocols"][name]


def _fold_index(folds: Sequence[dict[str, Any]], fold: int | str) -> int:
    """A fold by 0-based index or by name ("fold03")."""
    if isinstance(fold, int):
        if not 0 <= fold < len(folds):
            raise ExportError(f"no fold {fold}: the protocol has {len(folds)} (indices 0..{len(folds) - 1})")
        return fold
    for i, f in enumerate(folds):
        if f["name"] == fold:
            return i
    raise ExportError(f"no fold named {fold!r}; the protocol has {[f['name'] for f in folds]}")


def _stores(root: Path, corpus: str, features: Mapping[str, str]) -> dict[str, FeatureStore]:
    missing = [m for m in MODALITIES if m not in features]
    if missing:
        raise ConfigError(f"train.features names no extractor for {missing}")
    return {m: FeatureStore(root / store_path(corpus, features[m])) for m in MODALITIES}


def _store_source(store: FeatureStore) -> dict[str, Any]:
    return {"path": str(store.path), "extractor": store.attrs.get("extractor"), "version": store.attrs.get("version"),
            "dim": store.dim}


# ------------------------------------------------------------------------------------------------ output

@contextmanager
def _output_dir(out: Path) -> Iterator[Path]:
    """A fresh staging directory beside `out`, swapped in for `out` when the block succeeds.

    `out` may be absent, empty, or an earlier export (it holds MARKER); anything else is refused before any work.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ExportError(f"{out} exists and is not an earlier affectflow export (no {MARKER}); "
                          "choose an empty or new directory")
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(staging, out)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def _h5(path: Path) -> h5py.File:
    """An HDF5 file written the way the stores are (no timestamps), so equal inputs give equal bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return h5py.File(path, "w", libver=("earliest", "v110"), track_order=False)


# -------------------------------------------------------------------------------------------------- MMIN

def _frames(store: FeatureStore, utt_id: str, valid_only: bool) -> np.ndarray:
    """The frames our loader hands the models: none when the modality is missing, invalid frames dropped."""
    if not store.is_present(utt_id):
        return np.zeros((0, store.dim), np.float32)
    return np.asarray(store.get(utt_id, valid_only=valid_only), np.float32)


def _frame_moments(frames: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, mean, sum of squared deviations) over the rows, in float64."""
    x = frames.astype(np.float64)
    mean = x.mean(0) if len(x) else np.zeros(x.shape[1])
    return len(x), mean, ((x - mean) ** 2).sum(0)


def _merged_mean_std(moments: Sequence[tuple[int, np.ndarray, np.ndarray]], what: str) -> tuple[np.ndarray, ...]:
    """Mean and population std of the union of frame groups (Chan et al.'s pairwise combination), std 0 -> 1."""
    kept = [m for m in moments if m[0] > 0]
    if not kept:
        raise ExportError(f"{what}: no training utterance has audio frames; cannot compute mean/std")
    counts = np.array([m[0] for m in kept], np.float64)[:, None]
    means = np.stack([m[1] for m in kept])
    total = counts.sum()
    mean = (counts * means).sum(0) / total
    m2 = np.stack([m[2] for m in kept]).sum(0) + (counts * (means - mean) ** 2).sum(0)
    std = np.sqrt(m2 / total)
    std[std == 0] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _one_hot(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    out = np.zeros((len(labels), len(classes)), np.float32)
    index = {c: i for i, c in enumerate(classes)}
    for row, label in enumerate(labels):
        out[row, index[label]] = 1.0
    return out


def _int2name(ids: Sequence[str]) -> np.ndarray:
    width = max([1, *(len(i.encode()) for i in ids)])
    return np.array([[i.encode()] for i in ids], dtype=f"S{width}").reshape(len(ids), 1)


def _check_stores_hold(stores: Mapping[str, FeatureStore], ids: Sequence[str]) -> None:
    for store in stores.values():
        absent = [i for i in ids if i not in store]
        if absent:
            raise ConfigError(f"{store.path} lacks {len(absent)} utterances of the split (first {absent[0]!r}); "
                              "re-run its extract stage")


def _write_mmin_features(tmp: Path, stores: Mapping[str, FeatureStore], ids: Sequence[str], config: Mapping[str, Any],
                         ) -> tuple[dict[str, tuple[int, np.ndarray, np.ndarray]], int]:
    """One h5 per modality (a dataset per utterance); returns the audio frames' moments per utterance and how
    many modality entries had no frame."""
    moments: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
    missing_rows = 0
    for m in MODALITIES:
        store = stores[m]
        with _h5(tmp / "feature" / MMIN_DIRS[m] / f"{config['files'][m]}.h5") as h5:
            for utt_id in tqdm(ids, desc=f"export mmin {m}", unit="utt", disable=None, leave=False):
                frames = _frames(store, utt_id, config["valid_frames_only"])
                if m == "audio":
                    moments[utt_id] = _frame_moments(frames)
                if len(frames) == 0:
                    missing_rows += 1
                    if config["missing"] == "zero_row":
                        frames = np.zeros((1, store.dim), np.float32)
                h5.create_dataset(utt_id, data=frames, track_times=False)
    return moments, missing_rows


def _write_mmin_targets(target: Path, fold: Mapping[str, Any], utts: Mapping[str, Utterance],
                        classes: Sequence[str]) -> dict[str, int]:
    """One fold's one-hot labels and int2name arrays per MMIN set; returns the utterances per set."""
    target.mkdir(parents=True)
    counts: dict[str, int] = {}
    for part, set_name in MMIN_SETS.items():
        part_ids = fold[part]
        np.save(target / f"{set_name}_label.npy", _one_hot([utts[i].label for i in part_ids], classes))
        np.save(target / f"{set_name}_int2name.npy", _int2name(part_ids))
        counts[set_name] = len(part_ids)
    return counts


def export_mmin(root: str | Path, params: dict[str, Any], corpus: str, out: str | Path, fold: int | str | None = None,
                protocol: str | None = None) -> Path:
    """Write the MMIN layout of `corpus` (all folds of the protocol, or one) under `out`; returns `out`.

    root: the project directory holding data/, features/ and splits/. Features come from the stores that
    `models.<export.mmin.model>` trains on (train.features unless the model overrides them).
    """
    start = time.perf_counter()
    root, out = Path(root), Path(out)
    config = export_config(params, "mmin")
    model_cfg = model_config(params, config["model"], corpus)
    info, utts, splits = _corpus(root, corpus)
    protocol_name = protocol or config["protocol"]
    folds = _protocol(splits, protocol_name, corpus)["folds"]
    chosen = range(len(folds)) if fold is None else [_fold_index(folds, fold)]
    stores = _stores(root, corpus, model_cfg["features"])
    ids = sorted({i for k in chosen for part in PARTS for i in folds[k][part]})
    _check_stores_hold(stores, ids)
    files = config["files"]
    with _output_dir(out) as tmp:
        moments, missing_rows = _write_mmin_features(tmp, stores, ids, config)
        with _h5(tmp / "feature" / "A" / f"{config['mean_std']}.h5") as h5:
            for k in chosen:
                mean, std = _merged_mean_std([moments[i] for i in folds[k]["train"]],
                                             f"{protocol_name} {folds[k]['name']}")
                group = h5.create_group(str(k + 1), track_order=False)
                group.create_dataset("mean", data=mean, track_times=False)
                group.create_dataset("std", data=std, track_times=False)
        counts = {str(k + 1): _write_mmin_targets(tmp / "target" / str(k + 1), folds[k], utts, info.classes)
                  for k in chosen}
        final = out.resolve()
        _write_json(tmp / config["config_file"], {"data_root": lookup(params, f"corpora.{corpus}.root", None),
                                               "feature_root": str(final / "feature"),
                                               "target_root": str(final / "target"), "total_cv": len(folds)})
        _write_json(tmp / MARKER, {
            "layout": "mmin", "corpus": corpus, "protocol": protocol_name, "classes": info.classes,
            "folds": {str(k + 1): folds[k]["name"] for k in chosen}, "utterances": counts,
            "files": {m: f"feature/{MMIN_DIRS[m]}/{files[m]}.h5" for m in MODALITIES},
            "mean_std": f"feature/A/{config['mean_std']}.h5", "dims": {m: stores[m].dim for m in MODALITIES},
            "missing": config["missing"], "valid_frames_only": config["valid_frames_only"],
            "stores": {m: _store_source(s) for m, s in stores.items()}, "model": config["model"],
            "run_with": "--corpus_name=IEMOCAP (one-hot labels, bytes int2name); --cvNo=<fold index + 1>"})
    log.info("exported %s for MMIN to %s: %d utterances, %d folds (%s), %d modality entries without frames "
             "written as %s; %.1f s", corpus, out, len(ids), len(chosen), protocol_name, missing_rows,
             config["missing"], time.perf_counter() - start)
    return out


# ------------------------------------------------------------------------------------------------- MMGCN

def mmgcn_sets(utts: Mapping[str, Utterance], classes: Sequence[str], stores: Mapping[str, FeatureStore],
               fold: Mapping[str, Any], caps: Mapping[str, int | None]) -> dict[str, UtteranceSet]:
    """The fold's train/val/test UtteranceSets exactly as the train stage builds them for one fold: the fold's
    parts and unlabelled pool loaded as one set, then subset per part (so padding, and hence pooling, match)."""
    needed = sorted({i for part in (*PARTS, "unlabelled") for i in fold[part]})
    data = load_utterances([utts[i] for i in needed], classes, dict(stores), dict(caps))
    position = {u: i for i, u in enumerate(data.utt_ids)}
    return {part: data.subset([position[i] for i in fold[part]]) for part in PARTS}


def _dialogue_key(uset: UtteranceSet, i: int) -> str:
    return uset.dialogue_ids[i] or uset.utt_ids[i]


def _check_whole_dialogues(sets: Mapping[str, UtteranceSet], protocol: str) -> None:
    seen: dict[str, str] = {}
    for part, uset in sets.items():
        for i in range(len(uset)):
            key = _dialogue_key(uset, i)
            if seen.setdefault(key, part) != part:
                raise ExportError(f"protocol {protocol!r} puts dialogue {key!r} in both {seen[key]} and {part}; "
                                  "MMGCN needs whole dialogues: export with a dialogue protocol (e.g. --protocol "
                                  "dialogue)")


class _Float32Buffer:
    """Raw little-endian float32 bytes, pickled as `numpy.frombuffer(data, '<f4')`."""

    def __init__(self, data: bytes):
        self.data = data


class _PortablePickler(pickle.Pickler):
    """Pickles 1-d float32 arrays through `numpy.array` / `numpy.frombuffer`, names every NumPy version has."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if obj.dtype != np.float32:
                raise TypeError(f"only float32 arrays go into an exported pickle, got {obj.dtype} {obj.shape}")
            if obj.ndim != 1:  # numpy.reshape(<the 1-d array>, shape): MMSA's (N, T, D) arrays
                return np.reshape, (np.ascontiguousarray(obj).reshape(-1), tuple(int(n) for n in obj.shape))
            return np.array, (_Float32Buffer(obj.astype("<f4").tobytes()), "float32")
        if isinstance(obj, _Float32Buffer):
            return np.frombuffer, (obj.data, "<f4")
        return NotImplemented


def portable_pickle(value: Any, protocol: int) -> bytes:
    buffer = io.BytesIO()
    _PortablePickler(buffer, protocol=protocol).dump(value)
    return buffer.getvalue()


def _mmgcn_dialogues(sets: Mapping[str, UtteranceSet], vectors: Mapping[str, Mapping[str, Any]],
                     speakers: Mapping[str, Any], parties: int, utts: Mapping[str, Utterance], speaker_code: str,
                     ) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The pickle's first seven items (dialogue id -> per-utterance lists) and each part's dialogue order."""
    video: dict[str, dict[str, Any]] = {name: {} for name in MMGCN_ITEMS[:7]}
    order: dict[str, list[str]] = {}
    for part in PARTS:
        uset = sets[part]
        order[part] = []
        for dialogue in uset.dialogues():
            key = _dialogue_key(uset, dialogue[0])
            order[part].append(key)
            video["videoIDs"][key] = [uset.utt_ids[i] for i in dialogue]
            party = [int(speakers[part][i]) for i in dialogue]
            video["videoSpeakers"][key] = ([LETTERS[p] for p in party] if speaker_code == "letters"
                                           else [[int(p == k) for k in range(parties)] for p in party])
            video["videoLabels"][key] = [int(uset.labels[i]) for i in dialogue]
            for item, m in (("videoText", "text"), ("videoAudio", "audio"), ("videoVisual", "visual")):
                video[item][key] = [vectors[part][m][i].numpy().astype(np.float32) for i in dialogue]
            video["videoSentence"][key] = [utts[uset.utt_ids[i]].text or "" for i in dialogue]
    return video, order


def export_mmgcn(root: str | Path, params: dict[str, Any], corpus: str, out: str | Path,
                 fold: int | str | None = None, protocol: str | None = None) -> Path:
    """Write the MMGCN pickle of one fold of `corpus` under `out`; returns the pickle's path.

    Pooling, standardisation and stores are those of `models.<export.mmgcn.model>` on this corpus, so the
    vectors equal what that model is fed in this fold.
    """
    start = time.perf_counter()
    root, out = Path(root), Path(out)
    config = export_config(params, "mmgcn")
    model_cfg = model_config(params, config["model"], corpus)
    if model_cfg["family"] != "mmgcn":
        raise ConfigError(f"export.mmgcn.model: models.{config['model']} is a {model_cfg['family']} model, not mmgcn")
    info, utts, splits = _corpus(root, corpus)
    protocol_name = protocol or config["protocol"]
    folds = _protocol(splits, protocol_name, corpus)["folds"]
    index = _fold_index(folds, config["fold"] if fold is None else fold)
    stores = _stores(root, corpus, model_cfg["features"])
    caps = {m: (model_cfg.get("frames") or {}).get(m) for m in MODALITIES}
    sets = mmgcn_sets(utts, info.classes, stores, folds[index], caps)
    _check_whole_dialogues(sets, protocol_name)
    pooling = {**model_cfg, "modalities": "avt", "fusion": "graph"}  # all three channels, whatever the model uses
    vectors = dict(zip(PARTS, pooled_vectors([sets[p] for p in PARTS], pooling), strict=True))
    rows, parties = speaker_indices([sets[p] for p in PARTS], "party")
    speakers = dict(zip(PARTS, rows, strict=True))
    if config["speakers"] == "letters" and parties > len(LETTERS):
        raise ExportError(f"export.mmgcn.speakers: letters encodes {len(LETTERS)} parties, but a dialogue of "
                          f"{corpus} has {parties}; use onehot")

    video, order = _mmgcn_dialogues(sets, vectors, speakers, parties, utts, config["speakers"])
    items: list[Any] = [video[name] for name in MMGCN_ITEMS[:7]]
    items += [order["train"] + order["val"], order["test"]]
    if config["layout"] == "meld":
        items.append(list(order["val"]))
    counts = {part: len(sets[part]) for part in PARTS}
    with _output_dir(out) as tmp:
        (tmp / config["file"]).write_bytes(portable_pickle(items, config["pickle_protocol"]))
        _write_json(tmp / MARKER, {
            "layout": "mmgcn", "loader": config["layout"], "file": config["file"], "corpus": corpus,
            "protocol": protocol_name, "fold": folds[index]["name"], "fold_index": index, "classes": info.classes,
            "items": list(MMGCN_ITEMS) + (["valVid"] if config["layout"] == "meld" else []),
            "train_dialogues": order["train"], "val_dialogues": order["val"], "test_dialogues": order["test"],
            "utterances": counts, "dims": {m: stores[m].dim for m in MODALITIES}, "speakers": config["speakers"],
            "parties": parties, "pooling": model_cfg["pooling"], "standardize": list(model_cfg["standardize"]),
            "model": config["model"], "stores": {m: _store_source(s) for m, s in stores.items()},
            "unlabelled": "not exported: the split's parts hold labelled utterances only, as our MMGCN reads them"})
    log.info("exported %s fold %s (%s) for MMGCN to %s: %d/%d/%d dialogues, %d/%d/%d utterances (train/val/test), "
             "%d parties; %.1f s", corpus, folds[index]["name"], protocol_name, out / config["file"],
             len(order["train"]), len(order["val"]), len(order["test"]), counts["train"], counts["val"], counts["test"],
             parties, time.perf_counter() - start)
    return out / config["file"]


def read_mmgcn_export(out: str | Path) -> dict[str, UtteranceSet]:
    """An MMGCN export read back as the train/val/test UtteranceSets our MMGCN takes: each exported vector as a
    one-frame sequence (so any pooling returns it), speakers as their party, turns in the exported order.

    The vectors are already pooled and standardised: feed these sets to `models.mmgcn` with `standardize: []`.
    """
    out = Path(out)
    meta = json.loads((out / MARKER).read_text())
    if meta.get("layout") != "mmgcn":
        raise ExportError(f"{out / MARKER} is not an MMGCN export")
    with open(out / meta["file"], "rb") as fh:
        loaded = pickle.load(fh, encoding="latin1")
    video = dict(zip(MMGCN_ITEMS, loaded, strict=False))
    val = set(meta["val_dialogues"])
    parts = {"train": [d for d in video["trainVid"] if d not in val], "val": list(meta["val_dialogues"]),
             "test": list(video["testVid"])}

    def party(row: Any) -> int:
        return LETTERS.index(row) if isinstance(row, str) else int(np.argmax(row))

    sets = {}
    for part, dialogues in parts.items():
        ids = [u for d in dialogues for u in video["videoIDs"][d]]
        seqs = {}
        for item, m in (("videoAudio", "audio"), ("videoVisual", "visual"), ("videoText", "text")):
            rows = [np.asarray(v, np.float32) for d in dialogues for v in video[item][d]]
            values = torch.from_numpy(np.stack(rows)[:, None, :]) if rows else torch.zeros(0, 1, meta["dims"][m])
            seqs[m] = Sequences(values, torch.ones(len(rows), dtype=torch.long))
        sets[part] = UtteranceSet(
            ids, seqs["audio"], seqs["visual"], seqs["text"],
            torch.tensor([lab for d in dialogues for lab in video["videoLabels"][d]], dtype=torch.long),
            [f"party{party(s)}" for d in dialogues for s in video["videoSpeakers"][d]],
            [d for d in dialogues for _ in video["videoIDs"][d]],
            [t for d in dialogues for t in range(len(video["videoIDs"][d]))])
    return sets


# -------------------------------------------------------------------------------------------- MMSA, MERTools

MMSA_PARTS = {"train": "train", "val": "valid", "test": "test"}  # our part -> their mode
MMSA_KEYS = {"audio": "audio", "visual": "vision", "text": "text"}


def _fold_frames(root: Path, params: dict[str, Any], kind: str, corpus: str, fold: int | str | None,
                 protocol: str | None) -> tuple[dict[str, Any], CorpusInfo, dict[str, Utterance], str,
                                                dict[str, Any], dict[str, FeatureStore]]:
    """The export's config, corpus, protocol name, fold and the stores of `export.<kind>.model`."""
    config = export_config(params, kind)
    model_cfg = model_config(params, config["model"], corpus)
    info, utts, splits = _corpus(root, corpus)
    protocol_name = protocol or config["protocol"]
    folds = _protocol(splits, protocol_name, corpus)["folds"]
    chosen = folds[_fold_index(folds, config["fold"] if fold is None else fold)]
    stores = _stores(root, corpus, model_cfg["features"])
    for store in stores.values():
        absent = [i for part in PARTS for i in chosen[part] if i not in store]
        if absent:
            raise ConfigError(f"{store.path} lacks {len(absent)} utterances of the split (first {absent[0]!r}); "
                              "re-run its extract stage")
    return config, info, utts, protocol_name, chosen, stores


def _frames_or_zero(store: FeatureStore, utt_id: str, cap: int | None) -> tuple[np.ndarray, bool]:
    """The frames our loader reads (capped), or one zero frame when there are none; and whether any were."""
    frames = _frames(store, utt_id, valid_only=True)[:cap or None]
    return (frames, True) if len(frames) else (np.zeros((1, store.dim), np.float32), False)


def _regression_labels(ids: Sequence[str], utts: Mapping[str, Utterance], classes: Sequence[str],
                       how: str) -> np.ndarray:
    if how == "class_index":
        return np.array([classes.index(utts[i].label) for i in ids], np.float32)
    lacking = [i for i in ids if (utts[i].vad or {}).get("valence") is None]
    if lacking:
        raise ExportError(f"export.mmsa.regression: valence, but {len(lacking)} utterances have no valence in the "
                          f"manifest (first {lacking[0]!r}); use class_index")
    return np.array([utts[i].vad["valence"] for i in ids], np.float32)


def export_mmsa(root: str | Path, params: dict[str, Any], corpus: str, out: str | Path,
                fold: int | str | None = None, protocol: str | None = None) -> Path:
    """Write MMSA's unaligned pickle of one fold of `corpus` under `out`; returns the pickle's path."""
    start = time.perf_counter()
    root, out = Path(root), Path(out)
    config, info, utts, protocol_name, chosen, stores = _fold_frames(root, params, "mmsa", corpus, fold, protocol)
    caps = config["max_frames"]
    frames = {part: {m: [_frames_or_zero(stores[m], i, caps.get(m)) for i in chosen[part]] for m in MODALITIES}
              for part in MMSA_PARTS}
    width = {m: max(len(f) for part in MMSA_PARTS for f, _ in frames[part][m]) for m in MODALITIES}
    data: dict[str, dict[str, Any]] = {}
    missing = dict.fromkeys(MODALITIES, 0)
    for part, mode in MMSA_PARTS.items():
        ids = list(chosen[part])
        entry: dict[str, Any] = {"id": ids, "raw_text": [utts[i].text or "" for i in ids]}
        for m in MODALITIES:
            values = np.zeros((len(ids), width[m], stores[m].dim), np.float32)
            for row, (f, _) in enumerate(frames[part][m]):
                values[row, :len(f)] = f
            entry[MMSA_KEYS[m]] = values
            missing[m] += sum(not present for _, present in frames[part][m])
        entry["audio_lengths"] = [len(f) for f, _ in frames[part]["audio"]]
        entry["vision_lengths"] = [len(f) for f, _ in frames[part]["visual"]]
        entry["classification_labels"] = np.array([info.classes.index(utts[i].label) for i in ids], np.float32)
        entry["regression_labels"] = _regression_labels(ids, utts, info.classes, config["regression"])
        entry["annotations"] = [utts[i].label for i in ids]
        data[mode] = entry
    with _output_dir(out) as tmp:
        (tmp / config["file"]).write_bytes(portable_pickle(data, config["pickle_protocol"]))
        _write_json(tmp / MARKER, {
            "layout": "mmsa", "file": config["file"], "corpus": corpus, "protocol": protocol_name,
            "fold": chosen["name"], "classes": info.classes, "model": config["model"],
            "utterances": {mode: len(chosen[part]) for part, mode in MMSA_PARTS.items()},
            "feature_dims": [stores["text"].dim, stores["audio"].dim, stores["visual"].dim],  # their (t, a, v)
            "seq_lens": [width["text"], width["audio"], width["visual"]], "regression": config["regression"],
            "missing_as_one_zero_frame": missing, "stores": {m: _store_source(s) for m, s in stores.items()},
            "run_with": "need_data_aligned: false, use_bert: false, featurePath: <this file>"})
    log.info("exported %s fold %s (%s) for MMSA to %s: %s utterances, missing modalities %s; %.1f s", corpus,
             chosen["name"], protocol_name, out / config["file"], {p: len(chosen[p]) for p in MMSA_PARTS}, missing,
             time.perf_counter() - start)
    return out / config["file"]


def read_mmsa_export(path: str | Path) -> dict[str, dict[str, Any]]:
    """The pickle of an MMSA export, as their loader opens it."""
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _mertools_labels(ids: Sequence[str], utts: Mapping[str, Utterance], classes: Sequence[str]) -> dict:
    return {i: {"emo": classes.index(utts[i].label),
                "val": float((utts[i].vad or {}).get("valence", -10))} for i in ids}


def export_mertools(root: str | Path, params: dict[str, Any], corpus: str, out: str | Path,
                    fold: int | str | None = None, protocol: str | None = None) -> Path:
    """Write MERTools' per-clip feature folders and label file of one fold of `corpus` under `out`; returns
    `out`."""
    start = time.perf_counter()
    root, out = Path(root), Path(out)
    config, info, utts, protocol_name, chosen, stores = _fold_frames(root, params, "mertools", corpus, fold,
                                                                  protocol)
    ids = sorted({i for part in PARTS for i in chosen[part]})
    missing = dict.fromkeys(MODALITIES, 0)
    with _output_dir(out) as tmp:
        for m in MODALITIES:
            folder = tmp / "features" / config["features"][m]
            folder.mkdir(parents=True)
            for utt_id in tqdm(ids, desc=f"export mertools {m}", unit="utt", disable=None, leave=False):
                frames, present = _frames_or_zero(stores[m], utt_id, None)
                missing[m] += not present
                np.save(folder / f"{utt_id}.npy", frames.mean(0) if config["level"] == "utterance" else frames)
        corpora = {f"{part}_corpus": _mertools_labels(chosen[part], utts, info.classes) for part in PARTS}
        corpora["whole_corpus"] = {k: v for part in PARTS for k, v in corpora[f"{part}_corpus"].items()}
        np.savez_compressed(tmp / "label.npz", **{k: np.array(v, dtype=object) for k, v in corpora.items()})
        _write_json(tmp / MARKER, {
            "layout": "mertools", "corpus": corpus, "protocol": protocol_name, "fold": chosen["name"],
            "classes": info.classes, "model": config["model"], "level": config["level"],
            "features": {m: f"features/{config['features'][m]}" for m in MODALITIES}, "labels": "label.npz",
            "utterances": {part: len(chosen[part]) for part in PARTS}, "dims": {m: stores[m].dim for m in MODALITIES},
            "missing_as_zeros": missing, "stores": {m: _store_source(s) for m, s in stores.items()},
            "run_with": "--audio_feature={audio} --text_feature={text} --video_feature={visual}".format(
                **config["features"]) + (" --feat_type=utt" if config["level"] == "utterance" else " --feat_type="
                                      "frm_unalign")})
    log.info("exported %s fold %s (%s) for MERTools to %s: %d utterances, %s level, missing modalities %s; %.1f s",
             corpus, chosen["name"], protocol_name, out, len(ids), config["level"], missing,
             time.perf_counter() - start)
    return out


# --------------------------------------------------------------------------------------------------- CLI

EXPORTERS = {"mmin": export_mmin, "mmgcn": export_mmgcn, "mmsa": export_mmsa, "mertools": export_mertools}

from pipeline.export_cli import LAYOUT_HELP, register, run_export  # noqa: E402,F401 - the CLI half, kept light
