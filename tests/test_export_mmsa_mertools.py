"""`affectflow export mmsa|mertools`: one fold of a generated corpus in the layouts of MMSA and MERTools, read back
by small loaders written from each project's documented layout (issue 24):

- MMSA (`MMDataLoader`, unaligned): `pickle.load` of the file, then per mode `train`/`valid`/`test` the arrays
  `text`, `vision`, `audio` cast with `.astype(np.float32)`, `raw_text`, `id`, `regression_labels` as the 'M'
  label, `audio_lengths` / `vision_lengths`, and `audio[audio == -inf] = 0`.
- MERTools (MERBench's `Data_Feat`): names and labels from `np.load(label.npz, allow_pickle=True)[<part>_corpus]
  .tolist()`, each feature `np.load(<root>/<feature>/<name>.npy).squeeze()`, a 1-d feature read as one frame.
"""

from __future__ import annotations

import copy
import io
import json
import pickle
import pickletools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.data import MODALITIES
from pipeline.export import MARKER, ExportError, export_mertools, export_mmsa
from pipeline.params import load_params
from pipeline.store import FeatureStore
from tests import dataset_fixtures as fx

MMSA_KEYS = {"audio": "audio", "visual": "vision", "text": "text"}
MMSA_MODES = {"train": "train", "valid": "val", "test": "test"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("project")
    fx.write_project(root)
    return root


def params_of(project: Path, **changes: Any) -> dict:
    params = copy.deepcopy(load_params(project / "params.yaml"))
    for kind, values in changes.items():
        params["export"][kind].update(values)
    return params


def fold(project: Path, index: int = 0) -> dict:
    return json.loads((project / "splits/demo.json").read_text())["protocols"]["speaker"]["folds"][index]


def stores(project: Path) -> dict[str, FeatureStore]:
    return {m: FeatureStore(project / f"features/demo/{fx.EXTRACTOR[m]}.h5") for m in MODALITIES}


def frames(store: FeatureStore, utt_id: str) -> np.ndarray:
    return store.get(utt_id, valid_only=True) if store.is_present(utt_id) else np.zeros((0, store.dim), np.float32)


def mmsa_loader(path: Path, mode: str) -> dict[str, Any]:
    """What MMSA's MMDataset keeps of one mode (need_data_aligned: false, use_bert: false)."""
    with open(path, "rb") as f:
        data = pickle.load(f)
    part = data[mode]
    loaded = {"text": part["text"].astype(np.float32), "vision": part["vision"].astype(np.float32),
              "audio": part["audio"].astype(np.float32), "raw_text": part["raw_text"], "ids": part["id"],
              "labels": {"M": np.array(part["regression_labels"]).astype(np.float32)},
              "audio_lengths": part["audio_lengths"], "vision_lengths": part["vision_lengths"]}
    loaded["audio"][loaded["audio"] == -np.inf] = 0
    return loaded


class OldNumpyUnpickler(pickle.Unpickler):
    """Refuses any global outside the names NumPy 1.x and 2.x share (MMSA's environments run NumPy 1.x)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in {("numpy", "reshape"), ("numpy", "array"), ("numpy", "frombuffer")}:
            raise pickle.UnpicklingError(f"global {module}.{name} is not portable")
        return super().find_class(module, name)


def test_mmsa_pickle_reads_back_as_mmsas_loader_reads_it(project: Path, tmp_path: Path) -> None:
    path = export_mmsa(project, params_of(project), "demo", tmp_path / "mmsa")
    meta = json.loads((tmp_path / "mmsa" / MARKER).read_text())
    chosen, by_modality = fold(project), stores(project)
    manifest = {json.loads(line)["utt_id"]: json.loads(line) for line in
                (project / "data/demo/manifest.jsonl").read_text().splitlines()}
    assert path == tmp_path / "mmsa" / "unaligned.pkl" and meta["fold"] == chosen["name"]
    widths = set()
    for mode, part in MMSA_MODES.items():
        data = mmsa_loader(path, mode)
        ids = chosen[part]
        assert list(data["ids"]) == ids and data["labels"]["M"].shape == (len(ids),)
        assert data["labels"]["M"].tolist() == [fx.CLASSES.index(manifest[i]["label"]) for i in ids]
        assert data["raw_text"] == [manifest[i]["text"] for i in ids]
        for m, key in MMSA_KEYS.items():
            values = data[key]
            assert values.ndim == 3 and values.shape[0] == len(ids) and values.shape[2] == by_modality[m].dim
            widths.add((m, values.shape[1]))
            for row, utt_id in enumerate(ids):
                expected = frames(by_modality[m], utt_id)
                n = max(len(expected), 1)
                if key != "text":
                    assert data[f"{key}_lengths"][row] == n
                np.testing.assert_array_equal(values[row, :len(expected)], expected)
                assert not values[row, len(expected):].any()  # zero padding; a missing modality: one zero frame
    assert len(widths) == 3  # one padded width per modality across train, valid and test
    assert sum(meta["missing_as_one_zero_frame"].values()) > 0
    raw = path.read_bytes()
    globals_used = {arg for op, arg, _ in pickletools.genops(raw) if op.name in ("GLOBAL", "STACK_GLOBAL")}
    assert not any("_core" in str(g) for g in globals_used)
    OldNumpyUnpickler(io.BytesIO(raw)).load()


def test_mmsa_truncates_and_takes_valence(project: Path, tmp_path: Path) -> None:
    params = params_of(project, mmsa={"max_frames": {"audio": 4, "visual": None, "text": 2}})
    data = mmsa_loader(export_mmsa(project, params, "demo", tmp_path / "short", fold=1), "valid")
    assert data["audio"].shape[1] == 4 and data["text"].shape[1] == 2 and max(data["audio_lengths"]) <= 4
    with pytest.raises(ExportError, match="valence"):
        export_mmsa(project, params_of(project, mmsa={"regression": "valence"}), "demo", tmp_path / "v")


@pytest.mark.parametrize("level", ["frame", "utterance"])
def test_mertools_folders_read_back_as_merbench_reads_them(project: Path, tmp_path: Path, level: str) -> None:
    names = {"audio": "compare-FRA", "visual": "denseface-FRA", "text": "bert-FRA"}
    out = export_mertools(project, params_of(project, mertools={"level": level, "features": names}), "demo",
                          tmp_path / "mer")
    chosen, by_modality = fold(project), stores(project)
    manifest = {json.loads(line)["utt_id"]: json.loads(line) for line in
                (project / "data/demo/manifest.jsonl").read_text().splitlines()}
    labels = np.load(out / "label.npz", allow_pickle=True)
    whole = labels["whole_corpus"].tolist()
    for part in ("train", "val", "test"):
        corpus = labels[f"{part}_corpus"].tolist()
        assert list(corpus) == chosen[part]
        for name, label in corpus.items():
            assert whole[name] == label and label == {"emo": fx.CLASSES.index(manifest[name]["label"]), "val": -10}
            for m, feature in names.items():
                single = np.load(out / "features" / feature / f"{name}.npy").squeeze()
                read = single[np.newaxis, :] if single.ndim == 1 else single  # their (seqlen, featdim)
                expected = frames(by_modality[m], name)
                if level == "utterance":
                    expected = expected.mean(0, keepdims=True) if len(expected) else np.zeros((1, expected.shape[1]))
                elif not len(expected):
                    expected = np.zeros((1, by_modality[m].dim), np.float32)
                np.testing.assert_allclose(read, expected, rtol=1e-6)
    meta = json.loads((out / MARKER).read_text())
    assert meta["run_with"].startswith("--audio_feature=compare-FRA") and meta["level"] == level
