"""A small generated project (manifest, corpus.json, three feature stores, split file) for the Dataset, tracking
and exporter tests: the layout a `dvc repro` of the demo leaves, with frame-level features whose class centre
stands out from noise, missing modalities, invalid face frames, unlabelled utterances and dialogues."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pipeline.manifest import CorpusInfo, Utterance, write_manifest
from pipeline.splits import build_splits, write_splits
from pipeline.store import StoreWriter, UtteranceFeatures

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["ang", "hap", "neu", "sad"]
DIMS = {"compare": 12, "denseface": 6, "bert": 8}
EXTRACTOR = {"audio": "compare", "visual": "denseface", "text": "bert"}
PROTOCOLS = {"speaker": {"protocol": "speaker_folds", "val": "partner"},
             "session": {"protocol": "session_folds", "val": 0.5}}
FRACTIONS = [0.5, 1.0]


def utterances(corpus: str, sessions: int, dialogues: int, turns: int) -> list[Utterance]:
    """Two speakers per session taking turns; every 7th utterance unlabelled."""
    utts = []
    for s in range(sessions):
        for d in range(dialogues):
            for t in range(turns):
                k = len(utts)
                label = None if k % 7 == 6 else CLASSES[(k * 5 + d + s) % len(CLASSES)]
                spk = f"s{s}{'FM'[t % 2]}"
                utts.append(Utterance(utt_id=f"s{s}d{d}_{t:03d}{spk[-1]}", corpus=corpus, speaker=spk,
                                      session=f"s{s}", dialogue_id=f"s{s}d{d}", turn=t, text=f"words {k}",
                                      label=label))
    return sorted(utts, key=lambda u: u.utt_id)


def write_stores(root: Path, corpus: str, utts: list[Utterance], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, dim in DIMS.items():
        writer = StoreWriter(root / f"features/{corpus}/{name}.h5", [u.utt_id for u in utts], dim,
                             {"extractor": name}, frame_valid=name == "denseface")
        results = []
        for i, u in enumerate(utts):
            if (name == "denseface" and i % 9 == 4) or (name == "bert" and i % 17 == 3):
                results.append(UtteranceFeatures.missing("no_face" if name == "denseface" else "empty_transcript",
                                                         dim))
                continue
            centre = np.zeros(dim, np.float32)
            centre[CLASSES.index(u.label or "neu") % dim] = 0.5
            frames = (centre + rng.normal(0, 1, (int(rng.integers(3, 12)), dim))).astype(np.float32)
            if name == "compare":
                frames = frames * 20.0 + 100.0  # raw acoustic scale: a model must normalise
            valid = None
            if name == "denseface":
                valid = np.ones(len(frames), bool)
                valid[::4] = i % 2 == 0  # odd utterances lose every fourth frame
            results.append(UtteranceFeatures(frames, True, valid))
        for shard in writer.pending():
            writer.write_shard(shard, results[:len(shard.utt_ids)])
        writer.finalize()


def write_project(root: Path, corpus: str = "demo", sessions: int = 4, dialogues: int = 3, turns: int = 14,
                  seed: int = 0, params: bool = True) -> list[Utterance]:
    """Write a corpus's manifest, corpus.json, stores and split file under `root` (and the project's
    params.yaml, with `params`); returns the utterances."""
    utts = utterances(corpus, sessions, dialogues, turns)
    write_manifest(root / f"data/{corpus}/manifest.jsonl", utts, CLASSES)
    CorpusInfo(corpus, CLASSES, "demo").write(root / f"data/{corpus}/corpus.json")
    write_stores(root, corpus, utts, seed)
    write_splits(root / f"splits/{corpus}.json", build_splits(corpus, utts, CLASSES, PROTOCOLS, FRACTIONS, seed))
    if params:
        shutil.copy(REPO / "params.yaml", root / "params.yaml")
    return utts
