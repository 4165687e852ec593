"""The `denseface` extractor on videos built from the astronaut photo: MTCNN finds the face and the crop lands on
it, the split-screen half is honoured, segments are cut where the manifest says, faceless and broken videos are
marked, a checkpoint that does not fit fails first, and the store comes out complete and reproducible."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.extract import ExtractorConfigError
from pipeline.extract.face import (
    NO_FACE,
    NO_VIDEO,
    VIDEO_MISSING,
    VIDEO_UNREADABLE,
    crop_face,
    select_face,
)
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Utterance, VideoSegment
from pipeline.store import FeatureStore
from tests._face_media import (
    ASTRONAUT_FACE,
    astronaut_bgr,
    face_config,
    faceless,
    one_thread,  # noqa: F401 - autouse fixture
    write_checkpoint,
    write_video,
)
from tests.denseface_one_pass import DensefaceExtractor


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("face_corpus")
    face = astronaut_bgr(256)
    # 2 s at 10 fps: the face for the first second, then a faceless texture
    write_video(root / "astronaut.mp4", [face] * 10 + [faceless(face.shape, seed=i) for i in range(10)], fps=10)
    # split screen 320 x 160: nobody on the left, the astronaut on the right
    half = astronaut_bgr(160)
    split = np.concatenate([faceless(half.shape), half], axis=1)
    write_video(root / "split.mp4", [split] * 6, fps=10)
    rng = np.random.default_rng(0)
    (root / "noise.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (root / "truncated.mp4").write_bytes((root / "astronaut.mp4").read_bytes()[:1500])
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ck") / "denseface40.pt", depth=40)


@pytest.fixture(scope="module")
def extractor(corpus: Path, checkpoint: Path) -> DensefaceExtractor:
    ex = DensefaceExtractor(face_config(checkpoint), corpus)
    ex.setup()
    return ex


def utt(utt_id: str, path: str, start: float | None = None, end: float | None = None,
        region: str = "full") -> Utterance:
    return Utterance(utt_id, "test", "spk", "s1", video=VideoSegment(path, start, end, region))


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def iou(a: np.ndarray, b: tuple[float, ...]) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_mtcnn_finds_the_astronaut_and_the_crop_lands_on_her_face(extractor: DensefaceExtractor) -> None:
    photo = astronaut_bgr(512)
    (box,) = extractor.locate_faces([cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)])
    assert box is not None and iou(box, ASTRONAUT_FACE) > 0.7, box
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    crop = crop_face(gray, box, margin=0.0, size=64)
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    known = cv2.resize(gray[cy - side // 2:cy + side // 2, cx - side // 2:cx + side // 2], (64, 64))
    elsewhere = cv2.resize(gray[300:300 + side, 40:40 + side], (64, 64))
    on_face = np.corrcoef(crop.ravel(), known.ravel())[0, 1]
    assert on_face > 0.8
    assert on_face > np.corrcoef(crop.ravel(), elsewhere.ravel())[0, 1] + 0.3


def test_selection_and_border_crops() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 40, 40], [5, 5, 25, 25]], dtype=object)
    probs = np.array([0.99, 0.91, 0.95], dtype=object)
    np.testing.assert_array_equal(select_face(boxes, probs, "largest", 0.9), [0, 0, 40, 40])
    np.testing.assert_array_equal(select_face(boxes, probs, "probability", 0.9), [0, 0, 10, 10])
    np.testing.assert_array_equal(select_face(boxes, probs, "largest", 0.92), [5, 5, 25, 25])
    assert select_face(boxes, probs, "largest", 0.995) is None
    assert select_face(None, [None], "largest", 0.0) is None
    gray = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    corner = crop_face(gray, np.array([-10.0, -5.0, 20.0, 30.0]), margin=0.25, size=32)
    assert corner.shape == (32, 32)


def test_split_screen_takes_the_configured_half(corpus: Path, tmp_path: Path) -> None:
    full_net = write_checkpoint(tmp_path / "denseface100.pt", depth=100)
    ex = DensefaceExtractor(face_config(full_net, network={"depth": 100, "growth_rate": 12}), corpus)
    right, left, full = ex.process([utt("r", "split.mp4", region="right"), utt("l", "split.mp4", region="left"),
                                    utt("f", "split.mp4", region="full")])
    assert ex.dim == 342
    assert right.present and right.features.shape == (3, 342) and right.frame_valid.all()
    assert not left.present and left.failure == NO_FACE and not left.frame_valid.any()
    assert full.present and full.frame_valid.all()
    # same face, same crop whether found in the right half or in the full frame
    assert cosine(right.features, full.features).min() > 0.99


def test_segments_are_cut_where_the_manifest_says(extractor: DensefaceExtractor) -> None:
    with_face, without, across, whole = extractor.process([
        utt("a", "astronaut.mp4", 0.0, 1.0), utt("b", "astronaut.mp4", 1.0, 2.0),
        utt("c", "astronaut.mp4", 0.6, 1.4), utt("d", "astronaut.mp4")])
    assert with_face.present and with_face.frame_valid.tolist() == [True] * 5
    assert with_face.features.shape == (5, 132) and np.abs(with_face.features).sum(1).min() > 0
    assert not without.present and without.failure == NO_FACE
    assert without.features.shape == (5, 132) and not without.features.any()
    assert across.frame_valid.tolist() == [True, True, False, False]
    assert not across.features[2:].any()
    assert whole.frame_valid.tolist() == [True] * 5 + [False] * 5
    # each sampled frame is embedded the same way whichever segment it falls in
    np.testing.assert_allclose(across.features[:2], with_face.features[3:5], rtol=0, atol=1e-4)


def test_missing_corrupt_and_absent_videos_are_marked_with_their_reason(extractor: DensefaceExtractor) -> None:
    results = extractor.process([
        utt("m", "nowhere.mp4"), utt("n", "noise.mp4"), utt("t", "truncated.mp4"),
        Utterance("x", "test", "spk", "s1", text="no video here"), utt("ok", "astronaut.mp4", 0.0, 0.4)])
    assert [(r.present, r.failure) for r in results] == [
        (False, VIDEO_MISSING), (False, VIDEO_UNREADABLE), (False, VIDEO_UNREADABLE), (False, NO_VIDEO), (True, "")]
    assert all(r.features.shape == (0, 132) for r in results[:4])
    assert results[4].features.shape == (2, 132)


def test_configuration_errors_come_before_any_work(corpus: Path, checkpoint: Path) -> None:
    with pytest.raises(ExtractorConfigError, match="does not fit the configured network: depth: configured 100, "
                                                   "checkpoint 40"):
        DensefaceExtractor(face_config(checkpoint, network={"depth": 100, "growth_rate": 12}), corpus)
    with pytest.raises(ExtractorConfigError, match="checkpoint not found"):
        DensefaceExtractor(face_config(corpus / "none.pt"), corpus)
    config = face_config(checkpoint)
    del config["margin"]
    with pytest.raises(ExtractorConfigError, match=r"lacks \['margin'\]"):
        DensefaceExtractor(config, corpus)
    with pytest.raises(ExtractorConfigError, match="face_selection"):
        DensefaceExtractor(face_config(checkpoint, face_selection="central"), corpus)


def test_store_holds_frames_validity_and_model_identity(corpus: Path, checkpoint: Path, tmp_path: Path) -> None:
    utts = [utt("u1", "astronaut.mp4", 0.6, 1.4), utt("u2", "astronaut.mp4", 1.2, 2.0),
            utt("u3", "noise.mp4")]
    stores = []
    for run in ("a", "b"):
        ex = DensefaceExtractor(face_config(checkpoint, batch_size=2), corpus)
        summary = extract_to_store(ex, utts, tmp_path / run / "denseface.h5", max_failure_rate=0.7, progress=False)
        assert summary.present == 1 and dict(summary.failures) == {NO_FACE: 1, VIDEO_UNREADABLE: 1}
        stores.append(tmp_path / run / "denseface.h5")
    assert stores[0].read_bytes() == stores[1].read_bytes()
    with FeatureStore(stores[0]) as store:
        assert store.present.tolist() == [True, False, False]
        assert store.failure == ["", NO_FACE, VIDEO_UNREADABLE]
        assert store.frame_valid("u1").tolist() == [True, True, False, False]
        assert store.get("u1", valid_only=True).shape == (2, 132)
        assert store.length("u2") == 4 and store.length("u3") == 0
        assert store.attrs["model_sha256"] == ex.checkpoint_sha256
        assert store.attrs["frame_hop_s"] == pytest.approx(0.2)
        assert store.attr_json("config")["fps"] == 5
