"""The face track (faces.h5): MTCNN once per corpus; crops, boxes, probabilities and frame times per sampled
frame; the denseface embedder on it writes the datasets of the one-process extractor byte for byte; denseface and
hf_vision on one corpus run the detector once and read the track twice."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.extract import FACE_EMBEDDERS, ExtractorConfigError, extractor_class
from pipeline.extract.face_embed import DensefaceEmbedder
from pipeline.extract.face_track import FaceTrack, FaceTrackExtractor
from pipeline.extract.hf_vision import HfVisionExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Utterance, VideoSegment
from pipeline.store import FeatureStore, StoreError, StoreWriter, UtteranceFeatures
from tests._face_media import (
    ASTRONAUT_FACE,
    astronaut_bgr,
    embed_config,
    face_config,
    faceless,
    one_thread,  # noqa: F401 - autouse fixture
    tiny_vision_model,
    track_config,
    write_checkpoint,
    write_video,
)
from tests.denseface_one_pass import DensefaceExtractor


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("track_corpus")
    face = astronaut_bgr(256)
    write_video(root / "astronaut.mp4", [face] * 10 + [faceless(face.shape, seed=i) for i in range(10)], fps=10)
    rng = np.random.default_rng(0)
    (root / "noise.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ck") / "denseface40.pt", depth=40)


def utt(utt_id: str, path: str | None, start: float | None = None, end: float | None = None) -> Utterance:
    video = VideoSegment(path, start, end, "full") if path else None
    return Utterance(utt_id, "test", "spk", "s1", video=video)


UTTS = [utt("u1", "astronaut.mp4", 0.6, 1.4), utt("u2", "astronaut.mp4", 1.2, 2.0), utt("u3", "noise.mp4"),
        utt("u4", None), utt("u5", "astronaut.mp4")]


def iou(a: np.ndarray, b: tuple[float, ...]) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_the_track_holds_crops_boxes_probabilities_and_times(corpus: Path, tmp_path: Path) -> None:
    summary = extract_to_store(FaceTrackExtractor(track_config(color="rgb", crop_size=48), corpus), UTTS,
                               tmp_path / "faces.h5", max_failure_rate=1.0, progress=False)
    assert summary.present == 2
    with FaceTrack(tmp_path / "faces.h5") as track:
        assert track.failure == ["", "no_face", "unreadable", "no_video", ""]
        assert track.crop_shape == (48, 48, 3) and track.color == "rgb" and track.dim == 48 * 48 * 3
        crops = track.crops("u1")
        assert crops.dtype == np.uint8 and crops.shape == (4, 48, 48, 3)
        assert track.frame_valid("u1").tolist() == [True, True, False, False]
        assert crops[2:].max() == 0 and crops[:2].std() > 20  # a face where found, zeros elsewhere
        face = tuple(v / 2 for v in ASTRONAUT_FACE)  # the 512-pixel photo at 256
        assert iou(track.column("box", "u1")[0], face) > 0.6
        assert (track.column("probability", "u1")[:2] >= 0.9).all()
        assert track.column("probability", "u1")[2:].tolist() == [0.0, 0.0]
        np.testing.assert_allclose(track.column("frame_time", "u1"), [0.6, 0.8, 1.0, 1.2])
        assert track.length("u2") == 4 and not track.frame_valid("u2").any() and track.length("u3") == 0
        assert track.attrs["frame_hop_s"] == pytest.approx(0.2)
        with pytest.raises(StoreError, match="not float32"):
            FeatureStore(tmp_path / "faces.h5")  # a crop store is never mistaken for a feature store


def test_store_writer_refuses_other_types_and_clashing_columns(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "x.h5", ["a"], 4, {}, dtype="uint8")
    with pytest.raises(StoreError, match="features of type float32 for a store of uint8"):
        writer.write_shard(writer.shards[0], [UtteranceFeatures(np.zeros((2, 4), np.float32), True)])
    with pytest.raises(StoreError, match="would replace the store's own datasets"):
        StoreWriter(tmp_path / "y.h5", ["a"], 4, {}, columns={"present": ("float32", ())})


def test_denseface_on_the_track_writes_the_one_process_extractors_datasets(corpus: Path, checkpoint: Path,
                                                                            tmp_path: Path) -> None:
    extract_to_store(DensefaceExtractor(face_config(checkpoint, batch_size=2), corpus), UTTS, tmp_path / "old.h5",
                     max_failure_rate=1.0, progress=False)
    extract_to_store(FaceTrackExtractor(track_config(batch_size=2), corpus), UTTS, tmp_path / "faces.h5",
                     max_failure_rate=1.0, progress=False)
    embedder = DensefaceEmbedder(embed_config(checkpoint, batch_size=2), corpus, face_track=tmp_path / "faces.h5")
    extract_to_store(embedder, UTTS, tmp_path / "new.h5", max_failure_rate=1.0, progress=False)
    with h5py.File(tmp_path / "old.h5") as old, h5py.File(tmp_path / "new.h5") as new:
        for name in ("offsets", "features", "present", "frame_valid"):
            assert old[name].dtype == new[name].dtype and old[name][:].tobytes() == new[name][:].tobytes(), name
        for name in ("utt_ids", "failure"):
            assert old[name][:].tolist() == new[name][:].tolist(), name
        assert new.attrs["model_sha256"] == old.attrs["model_sha256"]
        assert '"min_face_probability": 0.9' in new.attrs["face_track"]  # the faces it was computed on


def test_denseface_and_hf_vision_run_mtcnn_once(corpus: Path, checkpoint: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from facenet_pytorch import MTCNN

    calls = {"detect": 0, "track_opened": 0}
    detect, open_track = MTCNN.detect, FaceTrack.__init__

    def counted_detect(self: MTCNN, *args: object, **kwargs: object) -> object:
        calls["detect"] += 1
        return detect(self, *args, **kwargs)

    def counted_open(self: FaceTrack, *args: object, **kwargs: object) -> None:
        calls["track_opened"] += 1
        open_track(self, *args, **kwargs)

    monkeypatch.setattr(MTCNN, "detect", counted_detect)
    monkeypatch.setattr(FaceTrack, "__init__", counted_open)
    track = tmp_path / "faces.h5"
    extract_to_store(FaceTrackExtractor(track_config(color="rgb", crop_size=32), corpus), UTTS, track,
                     max_failure_rate=1.0, progress=False)
    detections = calls["detect"]
    assert detections >= 1 and calls["track_opened"] == 0
    model = tiny_vision_model("vit", tmp_path / "vit")
    embedders = [DensefaceEmbedder(embed_config(checkpoint), corpus, face_track=track),
                 HfVisionExtractor({"model": str(model), "device": "cpu"}, corpus, face_track=track)]
    for embedder in embedders:
        extract_to_store(embedder, UTTS, tmp_path / f"{embedder.name}.h5", max_failure_rate=1.0, progress=False)
    assert calls["detect"] == detections and calls["track_opened"] == 2  # no detection; the track read twice
    with FeatureStore(tmp_path / "denseface.h5") as dense, FeatureStore(tmp_path / "hf_vision.h5") as vision:
        assert dense.present.tolist() == vision.present.tolist() == [True, False, False, False, True]
        assert vision.frame_valid("u5").tolist() == dense.frame_valid("u5").tolist()
        assert vision.get("u1").shape == (4, 32) and dense.get("u1").shape == (4, 132)


def test_registry_and_config_errors(corpus: Path, checkpoint: Path) -> None:
    assert {"denseface", "hf_vision"} <= FACE_EMBEDDERS and "faces" not in FACE_EMBEDDERS
    assert extractor_class("faces") is FaceTrackExtractor and extractor_class("denseface") is DensefaceEmbedder
    with pytest.raises(ExtractorConfigError, match="color must be gray or rgb"):
        FaceTrackExtractor(track_config(color="bgr"), corpus)
    with pytest.raises(ExtractorConfigError, match="lacks"):
        FaceTrackExtractor({"fps": 5}, corpus)
    with pytest.raises(ExtractorConfigError, match="detection settings moved to extractors.faces.config"):
        DensefaceEmbedder({"checkpoint": str(checkpoint)}, corpus)
    embedder = DensefaceEmbedder(embed_config(checkpoint), corpus)
    with pytest.raises(ExtractorConfigError, match="no face track given"):
        embedder.attributes()
