"""`hf_vision` on the face track with tiny randomly initialised CLIP vision, ViT and DINOv2 encoders (built from
transformers configs, saved to a temporary folder): shapes, CLS vs mean of the patch tokens, batched rows equal
one-by-one rows, a missing model fails before any work naming the path, the model's identity in the attributes,
and MMIN trains on a `hf_vision` store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import AutoModel

from pipeline.extract import ExtractorConfigError, sha256_of_files
from pipeline.extract.face_track import FaceTrack, FaceTrackExtractor
from pipeline.extract.hf_vision import FAMILY_MEAN_STD, HfVisionExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Utterance, VideoSegment, read_manifest
from pipeline.store import FeatureStore
from pipeline.train import train_model
from tests._face_media import (
    astronaut_bgr,
    faceless,
    one_thread,  # noqa: F401 - autouse fixture
    tiny_vision_model,
    track_config,
    write_video,
)
from tests.test_train import CLASSES, tiny_corpus, tiny_params

KINDS = ("clip", "vit", "dinov2")
ROOT = Path(__file__).resolve().parents[1]


def video_utt(utt_id: str, start: float, end: float) -> Utterance:
    return Utterance(utt_id, "test", "spk", "s1", video=VideoSegment("astronaut.mp4", start, end, "full"))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vision_corpus")
    face = astronaut_bgr(256)
    write_video(root / "astronaut.mp4", [face] * 10 + [faceless(face.shape, seed=i) for i in range(10)], fps=10)
    return root


UTTS = [video_utt("a", 0.0, 0.8), video_utt("b", 0.6, 1.4), video_utt("c", 1.2, 2.0)]


@pytest.fixture(scope="module")
def track(media: Path) -> Path:
    """A face track with RGB 40 x 40 crops (the tiny models read 32 x 32: the crops are resized)."""
    path = media / "faces.h5"
    extract_to_store(FaceTrackExtractor(track_config(color="rgb", crop_size=40), media), UTTS, path,
                     max_failure_rate=1.0, progress=False)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vision_models")
    return {kind: tiny_vision_model(kind, root / kind) for kind in KINDS}


def vision(model: Path, media: Path, track: Path, **config: object) -> HfVisionExtractor:
    return HfVisionExtractor({"model": str(model), "device": "cpu", **config}, media, face_track=track)


@pytest.mark.parametrize("kind", KINDS)
def test_rows_per_frame_cls_and_mean_match_the_bare_model(kind: str, models: dict[str, Path], media: Path,
                                                          track: Path) -> None:
    cls, mean = (vision(models[kind], media, track, pooling=p) for p in ("cls", "mean"))
    a_cls, b_cls, c_cls = cls.process(UTTS)
    assert a_cls.features.shape == (4, 32) and a_cls.frame_valid.all() and a_cls.present
    assert b_cls.frame_valid.tolist() == [True, True, False, False] and np.abs(b_cls.features[2:]).max() == 0
    assert not c_cls.present and c_cls.failure == "no_face" and c_cls.features.shape == (4, 32)
    crops = FaceTrack(track).crops("a")
    bare = AutoModel.from_pretrained(models[kind]).eval()
    with torch.no_grad():
        hidden = bare(pixel_values=cls.pixels(list(crops))).last_hidden_state.numpy()
    np.testing.assert_allclose(a_cls.features, hidden[:, 0], atol=1e-5)
    np.testing.assert_allclose(mean.process(UTTS[:1])[0].features, hidden[:, 1:].mean(1), atol=1e-5)
    assert np.abs(a_cls.features - hidden[:, 1:].mean(1)).max() > 1e-3  # two different poolings


def test_pixels_are_resized_and_normalised_with_the_familys_values(models: dict[str, Path], media: Path,
                                                                  track: Path) -> None:
    extractor = vision(models["clip"], media, track)
    assert extractor.input_size == 32 and extractor.mean == FAMILY_MEAN_STD["clip"][0]
    grey = np.full((40, 40), 255, np.uint8)
    pixels = extractor.pixels([grey])
    assert pixels.shape == (1, 3, 32, 32)
    expected = (1.0 - np.array(FAMILY_MEAN_STD["clip"][0])) / np.array(FAMILY_MEAN_STD["clip"][1])
    np.testing.assert_allclose(pixels[0, :, 5, 5].numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_batched_rows_equal_one_by_one_rows(kind: str, models: dict[str, Path], media: Path, track: Path) -> None:
    batched = vision(models[kind], media, track, crops_per_batch=64, pooling="mean").process(UTTS)
    single = vision(models[kind], media, track, crops_per_batch=1, pooling="mean").process(UTTS)
    for one, many in zip(single, batched, strict=True):
        np.testing.assert_allclose(one.features, many.features, rtol=0, atol=1e-5)


def test_a_missing_model_fails_before_any_work_naming_the_path(media: Path, tmp_path: Path) -> None:
    absent = tmp_path / "models" / "clip-vit-large"
    with pytest.raises(ExtractorConfigError, match=str(absent)):
        HfVisionExtractor({"model": str(absent)}, media, face_track=tmp_path / "faces.h5")
    with pytest.raises(ExtractorConfigError, match="unknown config keys \\['layer'\\]"):
        HfVisionExtractor({"model": str(absent), "layer": "last"}, media)
    assert not list(tmp_path.glob("*.h5*"))


def test_the_store_names_the_model_and_its_weights(models: dict[str, Path], media: Path, track: Path,
                                                   tmp_path: Path) -> None:
    extractor = vision(models["dinov2"], media, track, pooling="mean")
    extract_to_store(extractor, UTTS, tmp_path / "hf_vision.h5", max_failure_rate=1.0, progress=False)
    with FeatureStore(tmp_path / "hf_vision.h5") as store:
        assert store.dim == 32 and store.attrs["model_type"] == "dinov2" and store.attrs["pooling"] == "mean"
        assert store.attrs["weights_sha256"] == sha256_of_files([models["dinov2"] / "model.safetensors"])
        assert store.attrs["frame_hop_s"] == pytest.approx(0.2)
        assert json.loads(store.attrs["face_track"])["crop_shape"] == [40, 40, 3]
        assert store.attrs["model_source"] == "local-path"


def test_mmin_trains_on_a_hf_vision_store(models: dict[str, Path], media: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    utts = read_manifest(tmp_path / "data/tiny/manifest.jsonl", CLASSES)
    clips = [video_utt(u.utt_id, (i % 8) * 0.2, (i % 8) * 0.2 + 0.4) for i, u in enumerate(utts)]
    features = tmp_path / "features/tiny"
    extract_to_store(FaceTrackExtractor(track_config(color="rgb", crop_size=32, fps=5, batch_size=8), media),
                     clips, features / "faces.h5", max_failure_rate=1.0, progress=False)
    extract_to_store(vision(models["vit"], media, features / "faces.h5"), clips, features / "hf_vision.h5",
                     max_failure_rate=1.0, progress=False)
    params = tiny_params()
    params["train"].update(features={"audio": "compare", "visual": "hf_vision", "text": "bert"}, seeds=[0])
    train_model(params, "utt_fusion", "tiny")  # MMIN starts from the utterance-fusion encoders
    metrics = train_model(params, "mmin", "tiny")
    assert set(metrics["conditions"]) == {"azz", "zvz", "zzl", "avz", "azl", "zvl", "avl", "average"}
    with FeatureStore(features / "hf_vision.h5") as store:
        assert store.dim == 32 and 0 < store.present.sum() < len(utts)  # faces in the first second only


def test_the_readmes_hf_vision_block_is_valid_params_and_adds_its_stages() -> None:
    from pipeline.params import load_params, merged
    from pipeline.schema import check_params
    from pipeline.stages import render
    from tests.test_readme import blocks, readme, section

    (block,) = [b for b in blocks(section(readme(), "Extractors"), "yaml") if "hf_vision" in b]
    params = merged(load_params(ROOT / "params.yaml"), yaml.safe_load(block))
    checked = check_params(params)
    assert checked.extractor_configs[("demo", "faces")].color == "rgb"
    assert checked.extractor_configs[("demo", "hf_vision")].model == "openai/clip-vit-large-patch14"
    stages = yaml.safe_load(render(params, ROOT))["stages"]
    assert "demo" in stages["faces"]["foreach"]
    assert {"demo-denseface", "demo-hf_vision"} <= set(stages["extract-face"]["foreach"])
    assert "demo-hf_vision" not in stages["extract"]["foreach"]
    deps = stages["extract-face"]["do"]["deps"]
    assert "features/${item.corpus}/faces.h5" in deps
