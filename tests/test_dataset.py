"""`pipeline.dataset`: items and batches as the stores and split hold them, DataLoader workers, and the README's
"Use the features in your own model" block run as written on a generated corpus named demo (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.dataset import EmotionDataset, collate_utterances
from pipeline.params import ConfigError
from pipeline.store import FeatureStore
from tests import dataset_fixtures as fx
from tests.test_readme import blocks, readme, section


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    fx.write_project(root)
    return root


def fold0(project: Path, protocol: str = "speaker") -> dict:
    return json.loads((project / "splits/demo.json").read_text())["protocols"][protocol]["folds"][0]


def test_items_hold_the_stores_frames_masks_and_labels(project: Path) -> None:
    data = EmotionDataset("demo", root=project, protocol="speaker", fold=0, part="train")
    assert data.utt_ids == fold0(project)["train"] and data.modalities == ("audio", "visual", "text")
    assert data.dims == {"audio": 12, "visual": 6, "text": 8} and data.classes == fx.CLASSES
    stores = {m: FeatureStore(project / f"features/demo/{fx.EXTRACTOR[m]}.h5") for m in data.modalities}
    manifest = {json.loads(line)["utt_id"]: json.loads(line) for line in
                (project / "data/demo/manifest.jsonl").read_text().splitlines()}
    seen_missing = seen_dropped = 0
    for i in range(len(data)):
        item = data[i]
        assert item["label"] == fx.CLASSES.index(manifest[item["utt_id"]]["label"])
        for k, m in enumerate(data.modalities):
            store = stores[m]
            assert bool(item["present"][k]) == store.is_present(item["utt_id"])
            expected = store.get(item["utt_id"], valid_only=True) if store.is_present(item["utt_id"]) \
                else np.zeros((0, store.dim), np.float32)
            np.testing.assert_array_equal(item[m].numpy(), expected)
            seen_missing += not store.is_present(item["utt_id"])
            seen_dropped += store.is_present(item["utt_id"]) and len(expected) < store.length(item["utt_id"])
    assert seen_missing and seen_dropped  # the fixture exercises both


def test_labelled_fraction_hides_the_splits_labels_and_parts_select_ids(project: Path) -> None:
    half = EmotionDataset("demo", root=project, protocol="speaker", fold=0, part="train", labelled_fraction=0.5)
    hidden = set(json.loads((project / "splits/demo.json").read_text())
                 ["protocols"]["speaker"]["hidden_labels"]["0.5"][half.fold])
    assert hidden and all((half.labels[i] == -1) == (u in hidden) for i, u in enumerate(half.utt_ids))
    pool = EmotionDataset("demo", root=project, protocol="speaker", fold=0, part="unlabelled")
    assert pool.utt_ids == fold0(project)["unlabelled"] and set(pool.labels) == {-1}
    session = EmotionDataset("demo", root=project, protocol="session", fold=fold0(project, "session")["name"],
                             part="test", modalities=["text"])
    assert session.utt_ids == fold0(project, "session")["test"] and session.modalities == ("text",)
    assert set(session[0]) == {"utt_id", "label", "text", "present"}
    with pytest.raises(ConfigError, match="fractions"):
        EmotionDataset("demo", root=project, protocol="speaker", labelled_fraction=0.3)
    with pytest.raises(ConfigError, match="not in splits/demo.json"):
        EmotionDataset("demo", root=project)  # two protocols: name one
    with pytest.raises(ConfigError, match="part must be"):
        EmotionDataset("demo", root=project, protocol="speaker", part="dev")
    with pytest.raises(ConfigError, match="no fold"):
        EmotionDataset("demo", root=project, protocol="speaker", fold=99)


def test_collate_pads_and_masks(project: Path) -> None:
    data = EmotionDataset("demo", root=project, protocol="speaker", fold=0, part="val", max_frames={"audio": 5})
    items = [data[i] for i in range(6)]
    batch = collate_utterances(items)
    assert batch["utt_id"] == data.utt_ids[:6] and batch["present"].shape == (6, 3)
    for m in data.modalities:
        lengths = [len(it[m]) for it in items]
        assert batch[m].shape == (6, max([1, *lengths]), data.dims[m])
        assert batch[f"{m}_mask"].sum(1).tolist() == lengths
        for row, it in enumerate(items):
            torch.testing.assert_close(batch[m][row, :lengths[row]], it[m])
            assert not batch[m][row, lengths[row]:].any()
    assert max(len(it["audio"]) for it in items) <= 5


def test_dataloader_workers_read_what_the_main_process_reads(project: Path) -> None:
    data = EmotionDataset("demo", root=project, protocol="speaker", fold=0, part="train")
    data[0]  # an open handle in the parent must not leak into the workers
    serial = list(DataLoader(data, batch_size=16, collate_fn=collate_utterances))
    parallel = list(DataLoader(data, batch_size=16, collate_fn=collate_utterances, num_workers=2))
    assert len(serial) == len(parallel)
    for a, b in zip(serial, parallel, strict=True):
        assert a["utt_id"] == b["utt_id"]
        for key in ("label", "present", "audio", "audio_mask", "visual", "text"):
            torch.testing.assert_close(a[key], b[key])
    data.close()


def test_the_readmes_dataset_block_trains_above_chance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = blocks(section(readme(), "Use the features in your own model"), "python")
    fx.write_project(tmp_path, sessions=4, dialogues=4, turns=16)
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "readme_block"}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own block, run as written
    chance = 1 / len(fx.CLASSES)
    assert scope["ua"] > chance + 0.2, scope["ua"]
