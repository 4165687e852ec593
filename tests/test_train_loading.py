"""The train stage's data path: stores read straight into padded arrays (the same as one `FeatureStore.get` per
utterance), splits as views of the loaded set (the same tensors as copies), and the evaluation's shortcut for a
zeroed modality (the same logits as encoding every zeroed batch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import pipeline.train as train
from models.batches import prepare_fold
from models.encoders import UtteranceEncoders
from models.recipe import predict_conditions
from pipeline.manifest import Utterance
from pipeline.store import FeatureStore, StoreWriter, UtteranceFeatures
from tests.mmin_fixtures import TINY_SHAPES, synthetic_set, tiny_recipe

CLASSES = ["ang", "hap", "neu", "sad"]
CPU = torch.device("cpu")


def _store(path: Path, n: int, dim: int) -> FeatureStore:
    """Lengths 0-9, some utterances absent, every third frame invalid in odd utterances."""
    rng = np.random.default_rng(3)
    ids = [f"u{i:03d}" for i in range(n)]
    writer = StoreWriter(path, ids, dim, {"extractor": "toy"}, shard_size=7, frame_valid=True)
    results = []
    for i in range(n):
        if i % 5 == 2:
            results.append(UtteranceFeatures.missing("no_face", dim))
            continue
        frames = rng.normal(size=(i % 10, dim)).astype(np.float32)
        valid = np.arange(len(frames)) % 3 != 0 if i % 2 else None
        results.append(UtteranceFeatures(frames, True, valid))
    for shard in writer.pending():
        start = shard.index * 7
        writer.write_shard(shard, results[start:start + len(shard.utt_ids)])
    writer.finalize()
    return FeatureStore(path)


def _reference(store: FeatureStore, ids: list[str], cap: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One `get` per utterance, then padded: what the stage did before."""
    arrays = [store.get(u, valid_only=True) if store.is_present(u) else np.zeros((0, store.dim), np.float32)
              for u in ids]
    lengths = np.array([min(len(a), cap) if cap else len(a) for a in arrays])
    values = np.zeros((len(ids), max(1, int(lengths.max())), store.dim), np.float32)
    for i, (a, n) in enumerate(zip(arrays, lengths, strict=True)):
        values[i, :n] = a[:n]
    return values, lengths


@pytest.mark.parametrize("block_bytes", [train.READ_BLOCK_BYTES, 40])
@pytest.mark.parametrize("cap", [None, 4])
def test_stores_load_straight_into_padded_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 block_bytes: int, cap: int | None) -> None:
    monkeypatch.setattr(train, "READ_BLOCK_BYTES", block_bytes)  # 40 bytes: blocks of one or two utterances
    store = _store(tmp_path / "toy.h5", 40, 3)
    ids = [u for i, u in enumerate(store.utt_ids) if i % 4 != 1]  # gaps: reads split at every missing row
    utts = [Utterance(u, "toy", "spk", "s0", label=CLASSES[i % 4]) for i, u in enumerate(ids)]
    data = train.load_utterances(utts, CLASSES, {"visual": store}, {"visual": cap})
    values, lengths = _reference(store, ids, cap)
    assert data.visual is not None and data.visual.values.dtype == torch.float32
    np.testing.assert_array_equal(data.visual.values.numpy(), values)
    np.testing.assert_array_equal(data.visual.lengths.numpy(), lengths)
    assert data.audio is None and data.labels.tolist() == [i % 4 for i in range(len(ids))]


def test_views_give_the_tensors_of_copies() -> None:
    data = synthetic_set(30, shapes=TINY_SHAPES)
    labels = data.labels.clone()
    labels[::4] = -1  # unlabelled rows are left out of views and copies alike
    data.labels = labels
    parts = {"train": list(range(0, 18)), "val": list(range(18, 24)), "test": list(range(24, 30))}
    frames = {"audio": None, "visual": 3, "text": 9}
    views = prepare_fold({p: data.view(i) for p, i in parts.items()}, 4, frames, ["audio"], CPU)
    copies = prepare_fold({p: data.subset(i) for p, i in parts.items()}, 4, frames, ["audio"], CPU)
    for split in parts:
        assert views[split].utt_ids == copies[split].utt_ids
        assert torch.equal(views[split].labels, copies[split].labels)
        for name in ("audio", "visual", "text"):
            assert torch.equal(views[split].values[name], copies[split].values[name])
            assert torch.equal(views[split].lengths[name], copies[split].lengths[name])
    assert views["train"].modality_rows["audio"].source is data.audio.values  # shared, not copied


def test_a_zeroed_modality_is_encoded_once_per_batch_size() -> None:
    torch.manual_seed(0)
    data = synthetic_set(23, shapes=TINY_SHAPES)
    cfg = tiny_recipe()
    fold = prepare_fold({"train": data}, 4, cfg["frames"], cfg["normalise"], CPU)["train"]
    encoders = UtteranceEncoders(fold.dims, cfg["encoder"]).eval()
    head = torch.nn.Linear(encoders.output_dim, 4)
    conditions = ["azz", "zvz", "zzl", "avz", "azl", "zvl", "avl"]
    shortcut = predict_conditions(encoders, head, fold, conditions, batch_size=5, trim=False)
    with torch.no_grad():
        for condition, flags in zip(conditions, [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1),
                                                 (1, 1, 1)], strict=True):
            rows = torch.arange(len(fold))
            presence = torch.tensor([flags], dtype=torch.float32).expand(len(fold), 3)
            direct = torch.cat([head(encoders(fold.inputs(rows[s:s + 5], presence[s:s + 5])))
                                for s in range(0, len(fold), 5)])
            assert torch.equal(shortcut[condition], direct), condition
