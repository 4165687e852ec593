"""Video sampling and face detection helpers, and `DensefaceExtractor`: video -> MTCNN -> crop -> Denseface in one.

The stages no longer run `DensefaceExtractor`: MTCNN runs once per corpus in the `faces` stage
(pipeline/extract/face_track.py) and `denseface` / `hf_vision` embed its crops (face_embed.py, hf_vision.py). This
one-process class is kept as the reference the face track is checked against (tests/test_face_track.py builds the
demo's denseface store both ways and compares the bytes of its datasets) and for benchmarks/bench_face.py.

For each utterance the segment of its video is decoded with OpenCV (seek to the start frame, stop at the end),
frames are sampled at `fps`, the manifest's `face_region` is cut out (the whole frame, or the left / right half of
IEMOCAP's split screen), and facenet-pytorch's MTCNN looks for faces in batches of frames. One face per frame is
kept (the largest or the most confident), cropped square with a margin, turned grayscale, resized to the
checkpoint's input size and normalised, and the Denseface network embeds the crops in batches: one 342-d row per
sampled frame (at depth 100 / growth 12). A frame without a face gets a zero row and `frame_valid` false; an
utterance with no face in any frame is present=false (`no_face`); a missing, empty, undecodable or Git-LFS-pointer
video is missing with its reason (`pipeline.missing`). Frames of all the utterances of a work unit share the
detector and network batches, so short utterances still fill them; the unit depends only on the shard, so the
store's bytes do not depend on workers.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from models.denseface import Denseface
from models.trainer import pick_device
from pipeline import missing
from pipeline.denseface_checkpoint import CheckpointError, Normalisation, load_checkpoint
from pipeline.errors import AffectflowError
from pipeline.extract import Extractor, ExtractorConfigError, library_versions, sha256_of_files
from pipeline.extract.compute import compute_facts
from pipeline.manifest import Utterance
from pipeline.store import UtteranceFeatures

log = logging.getLogger(__name__)

CONFIG_KEYS = ("checkpoint", "network", "fps", "detector", "face_selection", "min_face_probability", "margin",
               "detect_batch", "embed_batch", "batch_size", "device")
DETECTOR_KEYS = ("min_face_size", "thresholds", "factor")
SELECTIONS = ("largest", "probability")

# failure reasons (pipeline.missing's vocabulary), counted by the stage's summary
NO_VIDEO = missing.NO_VIDEO
VIDEO_MISSING = missing.MISSING_FILE
VIDEO_UNREADABLE = missing.UNREADABLE
VIDEO_EMPTY = missing.EMPTY_FILE
VIDEO_LFS_POINTER = missing.LFS_POINTER
NO_FRAMES = missing.EMPTY_SEGMENT
NO_FACE = missing.NO_FACE


class VideoError(AffectflowError, RuntimeError):
    """A video that cannot be used; `reason` is one of the failure reasons above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def sample_segment(path: Path, start: float | None, end: float | None, fps: float) -> Iterator[np.ndarray]:
    """BGR frames of `path` sampled at `fps` from `start` to `end` seconds (None = the whole video).

    Sample k is at time start + k / fps and shows the frame that covers that time (index floor(t * video_fps)).
    Skipped frames are grabbed without conversion. Raises VideoError before the first frame when the file is
    absent or OpenCV cannot open or decode it.
    """
    if not path.is_file():
        raise VideoError(VIDEO_MISSING, str(path))
    if path.stat().st_size == 0:
        raise VideoError(VIDEO_EMPTY, f"{path}: zero-byte file")
    if missing.is_lfs_pointer(path):
        raise VideoError(VIDEO_LFS_POINTER, f"{path}: a Git LFS pointer, not video: run `git lfs pull` in the corpus "
                                            "root")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError(VIDEO_UNREADABLE, f"{path}: OpenCV cannot open it")
        video_fps = cap.get(cv2.CAP_PROP_FPS)
        if not video_fps or not math.isfinite(video_fps) or video_fps <= 0:
            raise VideoError(VIDEO_UNREADABLE, f"{path}: no frame rate ({video_fps!r})")
        begin = float(start or 0.0)
        stop = math.inf if end is None else float(end)
        position = 0
        first = math.floor(begin * video_fps + 1e-6)
        if first > 0:
            if cap.set(cv2.CAP_PROP_POS_FRAMES, first):
                position = first
        last_index, last_frame = -1, None
        for k in itertools.count():
            t = begin + k / fps
            if t >= stop:
                return
            index = math.floor(t * video_fps + 1e-6)
            if index == last_index:
                yield last_frame
                continue
            while position < index:
                if not cap.grab():
                    return
                position += 1
            ok, frame = cap.read()
            if not ok or frame is None:
                if position == 0:
                    raise VideoError(VIDEO_UNREADABLE, f"{path}: the first frame does not decode")
                return
            position += 1
            last_index, last_frame = index, frame
            yield frame
    finally:
        cap.release()


def face_region(frame: np.ndarray, region: str) -> np.ndarray:
    """The part of the frame that shows the speaker: all of it, or its left or right half."""
    if region == "full":
        return frame
    half = frame.shape[1] // 2
    if region == "left":
        return frame[:, :half]
    if region == "right":
        return frame[:, half:]
    raise ValueError(f"face_region must be full, left or right, got {region!r}")


def select_face(boxes: Any, probs: Any, how: str, min_probability: float) -> np.ndarray | None:
    """One box (x1, y1, x2, y2) from MTCNN's detections of a frame, or None."""
    chosen = select_face_with_probability(boxes, probs, how, min_probability)
    return None if chosen is None else chosen[0]


def select_face_with_probability(boxes: Any, probs: Any, how: str,
                                 min_probability: float) -> tuple[np.ndarray, float] | None:
    """The chosen box (x1, y1, x2, y2) of a frame and MTCNN's probability for it, or None.

    With numpy 2, `MTCNN.detect` returns object arrays (None where nothing was found): cast them here.
    """
    if boxes is None:
        return None
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    keep = p >= min_probability
    if not keep.any():
        return None
    b, p = b[keep], p[keep]
    if how == "largest":
        score = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    elif how == "probability":
        score = p
    else:
        raise ValueError(f"face_selection must be one of {SELECTIONS}, got {how!r}")
    best = int(np.argmax(score))
    return b[best], float(p[best])


def crop_face(gray: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """A square crop centred on the box, its side max(w, h) x (1 + 2 margin), edge pixels repeated where it leaves
    the image, resized to size x size (uint8)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    side_px = max(2, int(round(side)))
    left = int(round((x1 + x2) / 2 - side_px / 2))
    top = int(round((y1 + y2) / 2 - side_px / 2))
    h, w = gray.shape[:2]
    x_lo, y_lo = max(left, 0), max(top, 0)
    x_hi, y_hi = min(left + side_px, w), min(top + side_px, h)
    if x_hi <= x_lo or y_hi <= y_lo:
        raise ValueError(f"face box {box.tolist()} lies outside the {w}x{h} image")
    patch = gray[y_lo:y_hi, x_lo:x_hi]
    pads = (y_lo - top, top + side_px - y_hi, x_lo - left, left + side_px - x_hi)
    if any(pads):
        patch = cv2.copyMakeBorder(patch, *pads, borderType=cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if side_px > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def check_detection_config(cfg: dict[str, Any], who: str, keys: Sequence[str]) -> None:
    """The face detection settings (fps, MTCNN, selection, margin, batches), checked before any work."""
    absent = [k for k in keys if k not in cfg]
    if absent:
        raise ExtractorConfigError(f"{who} config lacks {absent} (needs {list(keys)})")
    det = cfg["detector"]
    if not isinstance(det, dict) or [k for k in DETECTOR_KEYS if k not in det]:
        raise ExtractorConfigError(f"{who} detector must hold {list(DETECTOR_KEYS)}, got {det!r}")
    thresholds = det["thresholds"]
    if len(thresholds) != 3 or not all(0 < float(t) < 1 for t in thresholds):
        raise ExtractorConfigError(f"detector.thresholds: three values in (0, 1) for P-, R- and O-Net, got "
                                   f"{thresholds!r}")
    if not det["min_face_size"] >= 12 or not 0 < det["factor"] < 1:
        raise ExtractorConfigError(f"detector needs min_face_size >= 12 and factor in (0, 1), got {det!r}")
    if not cfg["fps"] > 0:
        raise ExtractorConfigError(f"fps must be positive, got {cfg['fps']!r}")
    if cfg["face_selection"] not in SELECTIONS:
        raise ExtractorConfigError(f"face_selection must be one of {SELECTIONS}, got {cfg['face_selection']!r}")
    if not 0 <= cfg["min_face_probability"] < 1 or not cfg["margin"] >= 0:
        raise ExtractorConfigError(f"min_face_probability in [0, 1) and margin >= 0 needed, got "
                                   f"{cfg['min_face_probability']!r}, {cfg['margin']!r}")
    for key in ("detect_batch", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ExtractorConfigError(f"{key} must be a positive integer, got {cfg[key]!r}")


@dataclass
class _Frame:
    """A sampled frame waiting for the detector."""

    owner: int  # position of its utterance in the work unit
    step: int  # its row in that utterance's features
    rgb: np.ndarray
    gray: np.ndarray


class DensefaceExtractor(Extractor):
    name = "denseface"
    version = "1"
    modality = "video"
    has_frame_valid = True

    def __init__(self, config: dict[str, Any], corpus_root: Path) -> None:
        super().__init__(config, corpus_root)
        cfg = self.config
        check_detection_config(cfg, self.name, CONFIG_KEYS)
        for key in ("embed_batch",):
            if not isinstance(cfg[key], int) or cfg[key] < 1:
                raise ExtractorConfigError(f"{key} must be a positive integer, got {cfg[key]!r}")
        self.checkpoint_path = Path(cfg["checkpoint"])
        try:
            checkpoint = load_checkpoint(self.checkpoint_path, dict(cfg["network"] or {}))
        except CheckpointError as err:
            raise ExtractorConfigError(str(err)) from None
        self.network = checkpoint.network
        self.classes = checkpoint.classes
        self.normalisation: Normalisation = checkpoint.normalisation
        self.checkpoint_sha256 = sha256_of_files([self.checkpoint_path])
        self._model: Denseface | None = None
        self._detector: Any = None
        self._device: torch.device | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_model=None, _detector=None, _device=None)
        return state

    @property
    def dim(self) -> int:
        return self.network.feature_dim

    def describe(self) -> dict[str, Any]:
        return {
            "feature_names": json.dumps([f"denseface_{i:03d}" for i in range(self.dim)]),
            "frame_hop_s": 1.0 / float(self.config["fps"]),
            "model": "denseface",
            "model_sha256": self.checkpoint_sha256,
            "model_config": json.dumps({"network": self.network.to_dict(), "classes": self.classes,
                                        "normalisation": self.normalisation.to_dict()}, sort_keys=True),
            "face_detector": "facenet-pytorch MTCNN (weights shipped in the wheel)",
            "library_versions": json.dumps(library_versions("torch", "facenet-pytorch", "opencv-python-headless",
                                                            "numpy"), sort_keys=True),
            "compute": json.dumps(compute_facts(pick_device(self.config["device"])), sort_keys=True),
        }

    def setup(self) -> None:
        if self._model is not None:
            return
        from facenet_pytorch import MTCNN

        self._device = pick_device(self.config["device"])
        det = self.config["detector"]
        self._detector = MTCNN(min_face_size=det["min_face_size"], thresholds=[float(t) for t in det["thresholds"]],
                               factor=float(det["factor"]), keep_all=True, post_process=False,
                               device=self._device).eval()
        # NHWC convolutions: measured 1.3x (MTCNN) and 1.3x (Denseface) faster on CPU than NCHW, same results
        self._detector.to(memory_format=torch.channels_last)
        self._model = load_checkpoint(self.checkpoint_path).build().to(self._device,
                                                                        memory_format=torch.channels_last)

    # -- the work -------------------------------------------------------------------------------------------

    def _frames(self, utt: Utterance) -> Iterator[np.ndarray]:
        seg = utt.video
        return sample_segment(self.corpus_root / seg.path, seg.start, seg.end, float(self.config["fps"]))

    def locate_faces(self, rgb_frames: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        """The chosen face box (x1, y1, x2, y2) of each RGB frame (all of one shape), or None; one MTCNN call."""
        self.setup()
        boxes, probs = self._detector.detect(np.stack(rgb_frames))
        return [select_face(frame_boxes, frame_probs, self.config["face_selection"],
                            float(self.config["min_face_probability"]))
                for frame_boxes, frame_probs in zip(boxes, probs, strict=True)]

    def _detect(self, frames: list[_Frame], crops: list[np.ndarray], owners: list[tuple[int, int]]) -> None:
        """Run MTCNN on frames of one shape; append the chosen face crops and whose they are."""
        for frame, box in zip(frames, self.locate_faces([f.rgb for f in frames]), strict=True):
            if box is not None:
                crops.append(crop_face(frame.gray, box, float(self.config["margin"]), self.normalisation.size))
                owners.append((frame.owner, frame.step))

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Denseface features [N, dim] of uint8 crops, in batches of `embed_batch`."""
        self.setup()
        out = np.zeros((len(crops), self.dim), np.float32)
        size = int(self.config["embed_batch"])
        norm = self.normalisation
        with torch.inference_mode():
            for lo in range(0, len(crops), size):
                batch = torch.from_numpy(np.stack(crops[lo:lo + size])).unsqueeze(1).to(self._device)
                x = ((batch.float() - norm.mean) / norm.std).contiguous(memory_format=torch.channels_last)
                out[lo:lo + len(batch)] = self._model.features(x).cpu().numpy()
        return out

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        self.setup()
        results: list[UtteranceFeatures | None] = [None] * len(utts)
        lengths = [0] * len(utts)
        crops: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []
        pending: list[_Frame] = []
        batch = int(self.config["detect_batch"])
        for u, utt in enumerate(utts):
            if utt.video is None:
                results[u] = UtteranceFeatures.missing(NO_VIDEO, self.dim)
                continue
            try:
                for step, frame in enumerate(self._frames(utt)):
                    region = face_region(frame, utt.video.face_region)
                    if pending and pending[0].rgb.shape != region.shape:
                        self._detect(pending, crops, owners)
                        pending = []
                    pending.append(_Frame(u, step, cv2.cvtColor(region, cv2.COLOR_BGR2RGB),
                                          cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)))
                    lengths[u] = step + 1
                    if len(pending) >= batch:
                        self._detect(pending, crops, owners)
                        pending = []
            except VideoError as err:
                log.warning("%s: %s", utt.utt_id, err)
                results[u] = UtteranceFeatures.missing(err.reason, self.dim)
                lengths[u] = 0
                pending = [f for f in pending if f.owner != u]
                continue
            if lengths[u] == 0:
                log.warning("%s: no frame in %s [%s, %s]", utt.utt_id, utt.video.path, utt.video.start,
                            utt.video.end)
                results[u] = UtteranceFeatures.missing(NO_FRAMES, self.dim)
        if pending:
            self._detect(pending, crops, owners)
        features = self.embed(crops) if crops else np.zeros((0, self.dim), np.float32)
        per_utt: dict[int, list[tuple[int, int]]] = {}
        for row, (u, step) in enumerate(owners):
            per_utt.setdefault(u, []).append((step, row))
        for u in range(len(utts)):
            if results[u] is not None:
                continue
            values = np.zeros((lengths[u], self.dim), np.float32)
            valid = np.zeros(lengths[u], bool)
            for step, row in per_utt.get(u, []):
                values[step] = features[row]
                valid[step] = True
            if valid.any():
                results[u] = UtteranceFeatures(values, True, valid)
            else:
                results[u] = UtteranceFeatures(values, False, valid, NO_FACE)
        return [r for r in results if r is not None]
