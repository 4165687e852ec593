"""A `torch.utils.data.Dataset` over a corpus's feature stores and one part of a split, for any model.

    from torch.utils.data import DataLoader
    from pipeline.dataset import EmotionDataset, collate_utterances

    train = EmotionDataset("demo", part="train", fold=0)
    loader = DataLoader(train, batch_size=32, shuffle=True, collate_fn=collate_utterances, num_workers=2)

An item is one utterance: `utt_id`, `label` (the class index; -1 when it has none or the labelled fraction hides
it), one float32 (T, D) tensor per modality (frames an extractor marked invalid dropped, as the train stage drops
them; (0, D) when the modality is missing for that utterance) and `present`, the missing-modality mask (one bool
per modality of the dataset, in `dataset.modalities` order). `collate_utterances` pads a batch: each modality
becomes [B, T, D] zero-padded with a `<modality>_mask` [B, T] (true on real frames), `present` [B, M], `label` [B].

The stores are opened lazily and read-only (`pipeline.store.FeatureStore`): the dataset pickles into DataLoader
workers without an open HDF5 handle and each worker opens its own. It reads what the train stage reads: the
manifest and class list under `data/<corpus>/`, `splits/<corpus>.json`, and `features/<corpus>/<extractor>.h5`
for the extractors `train.features` names in params.yaml (or `features=`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from models.data import MODALITIES, UNLABELLED
from pipeline.layout import corpus_info_path, manifest_path, split_path, store_path
from pipeline.manifest import CorpusInfo, read_manifest
from pipeline.params import ConfigError, load_params, lookup
from pipeline.splits import load_splits
from pipeline.store import FeatureStore

__all__ = ["PARTS", "EmotionDataset", "collate_utterances"]

PARTS = ("train", "val", "test", "unlabelled")
DEFAULT_FEATURES = {"audio": "compare", "visual": "denseface", "text": "bert"}


def _project_features(root: Path, corpus: str) -> dict[str, str]:
    """modality -> extractor from the project's params.yaml (`train.features`, limited to the corpus's
    modalities), or the defaults when the directory has no params.yaml."""
    if not (root / "params.yaml").is_file():
        return dict(DEFAULT_FEATURES)
    from pipeline.modalities import corpus_modalities

    params = load_params(root / "params.yaml")
    features = dict(lookup(params, "train.features", DEFAULT_FEATURES) or DEFAULT_FEATURES)
    if corpus in (lookup(params, "corpora", {}) or {}):
        features = {m: x for m, x in features.items() if m in corpus_modalities(params, corpus)}
    return features


class EmotionDataset(Dataset):
    """The utterances of one part (`train`, `val`, `test` or `unlabelled`) of one fold of a split protocol.

    corpus: the corpus name (`data/<corpus>/`, `splits/<corpus>.json`, `features/<corpus>/`) under `root`.
    protocol: a protocol of the split file (`speaker`, `dialogue`, ...; may be left out when it has only one).
    fold: index or name. modalities: a subset of the features' modalities (default: all of them).
    features: modality -> extractor (default: params.yaml's `train.features` for the corpus).
    labelled_fraction: with a fraction of `splits.labelled_fractions` below 1, the training labels the split
    hides for that fraction read as -1 (SSMM's sweep). max_frames: keep at most this many frames per modality
    (an int for all, or a mapping per modality).
    """

    def __init__(self, corpus: str, *, root: str | Path = ".", protocol: str | None = None, fold: int | str = 0,
                 part: str = "train", modalities: Sequence[str] | None = None,
                 features: Mapping[str, str] | None = None, labelled_fraction: float = 1.0,
                 max_frames: int | Mapping[str, int | None] | None = None) -> None:
        root = Path(root)
        if part not in PARTS:
            raise ConfigError(f"part must be one of {PARTS}, got {part!r}")
        features = dict(features) if features is not None else _project_features(root, corpus)
        chosen = tuple(m for m in MODALITIES if m in (modalities or features))
        unknown = [m for m in (modalities or ()) if m not in features]
        if unknown or not chosen:
            raise ConfigError(f"modalities {list(modalities or ())} must be a non-empty subset of the features' "
                              f"{list(features)}")
        info = CorpusInfo.read(root / corpus_info_path(corpus))
        splits = load_splits(root / split_path(corpus))
        if protocol is None and len(splits["protocols"]) == 1:
            protocol = next(iter(splits["protocols"]))
        if protocol not in splits["protocols"]:
            raise ConfigError(f"protocol {protocol!r} is not in splits/{corpus}.json (it has "
                              f"{sorted(splits['protocols'])})")
        folds = splits["protocols"][protocol]["folds"]
        picked = folds[fold] if isinstance(fold, int) and -len(folds) <= fold < len(folds) else next(
            (f for f in folds if f["name"] == fold), None)
        if picked is None:
            raise ConfigError(f"protocol {protocol!r} has no fold {fold!r} ({len(folds)} folds)")
        self.corpus, self.protocol, self.fold, self.part = corpus, protocol, picked["name"], part
        self.classes: list[str] = list(info.classes)
        self.modalities = chosen
        self.utt_ids: list[str] = list(picked[part])
        utts = {u.utt_id: u for u in read_manifest(root / manifest_path(corpus), info.classes)}
        index = {c: i for i, c in enumerate(self.classes)}
        hidden = set(self._hidden(splits["protocols"][protocol], labelled_fraction)) if part == "train" else set()
        self.labels = [index[utts[i].label] if utts[i].label is not None and i not in hidden else UNLABELLED
                       for i in self.utt_ids]
        self.stores = {m: FeatureStore(root / store_path(corpus, features[m])) for m in chosen}
        for store in self.stores.values():
            absent = [i for i in self.utt_ids if i not in store]
            if absent:
                raise ConfigError(f"{store.path} lacks {len(absent)} utterances of the split (first {absent[0]!r});"
                                  " re-run its extract stage")
        caps = max_frames if isinstance(max_frames, Mapping) else dict.fromkeys(chosen, max_frames)
        self.max_frames = {m: caps.get(m) for m in chosen}

    def _hidden(self, protocol: dict[str, Any], fraction: float) -> list[str]:
        if fraction >= 1.0:
            return []
        key = f"{float(fraction):g}"
        if key not in protocol["hidden_labels"]:
            raise ConfigError(f"labelled_fraction {fraction} is not one of the split's fractions "
                              f"{sorted(protocol['hidden_labels'])} (splits.labelled_fractions)")
        return protocol["hidden_labels"][key][self.fold]

    @property
    def dims(self) -> dict[str, int]:
        """Feature width per modality."""
        return {m: s.dim for m, s in self.stores.items()}

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        utt_id = self.utt_ids[i]
        item: dict[str, Any] = {"utt_id": utt_id, "label": self.labels[i]}
        present = []
        for m, store in self.stores.items():
            is_present = store.is_present(utt_id)
            frames = store.get(utt_id, valid_only=True) if is_present else np.zeros((0, store.dim), np.float32)
            cap = self.max_frames[m]
            item[m] = torch.from_numpy(np.ascontiguousarray(frames[:cap] if cap else frames, np.float32))
            present.append(is_present and len(frames) > 0)
        item["present"] = torch.tensor(present, dtype=torch.bool)
        return item

    def close(self) -> None:
        """Close this process's HDF5 handles (they reopen on the next read)."""
        for store in self.stores.values():
            store.close()


def collate_utterances(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of items into a batch: `<modality>` [B, T, D] zero-padded (T at least 1), `<modality>_mask`
    [B, T] bool, `present` [B, M] bool, `label` [B] int64, `utt_id` [B] strings."""
    batch: dict[str, Any] = {"utt_id": [it["utt_id"] for it in items],
                             "label": torch.tensor([it["label"] for it in items], dtype=torch.long),
                             "present": torch.stack([it["present"] for it in items])}
    for m in [m for m in MODALITIES if items and m in items[0]]:
        seqs = [it[m] for it in items]
        longest = max([1, *(len(s) for s in seqs)])
        values = torch.zeros(len(seqs), longest, seqs[0].shape[1], dtype=torch.float32)
        mask = torch.zeros(len(seqs), longest, dtype=torch.bool)
        for row, s in enumerate(seqs):
            values[row, :len(s)] = s
            mask[row, :len(s)] = True
        batch[m], batch[f"{m}_mask"] = values, mask
    return batch
