"""The one-pass Denseface extractor the stages ran before the face track: video -> MTCNN -> crop -> Denseface in one
class. Kept as a fixture: tests/test_face_track.py builds the demo's denseface store both ways and compares the
bytes of its datasets, tests/test_face.py checks the detection helpers through it, and benchmarks/bench_face.py
times it.

For each utterance the segment of its video is decoded with OpenCV (seek to the start frame, stop at the end),
frames are sampled at `fps`, the manifest's `face_region` is cut out (the whole frame, or the left / right half of
IEMOCAP's split screen), and facenet-pytorch's MTCNN looks for faces in batches of frames. One face per frame is
kept (the largest or the most confident), cropped square with a margin, turned grayscale, resized to the
checkpoint's input size and normalised, and the Denseface network embeds the crops in batches: one 342-d row per
sampled frame (at depth 100 / growth 12). A frame without a face gets a zero row and `frame_valid` false; an
utterance with no face in any frame is present=false (`no_face`); a missing, empty, undecodable or Git-LFS-pointer
video is missing with its reason (`pipeline.missing`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from models.denseface import Denseface
from models.trainer import pick_device
from pipeline.denseface.checkpoint import CheckpointError, Normalisation, load_checkpoint
from pipeline.extract import Extractor, ExtractorConfigError, library_versions, sha256_of_files
from pipeline.extract.compute import compute_facts
from pipeline.extract.face import (
    NO_FACE,
    NO_FRAMES,
    NO_VIDEO,
    VideoError,
    check_detection_config,
    crop_face,
    face_region,
    sample_segment,
    select_face,
)
from pipeline.manifest import Utterance
from pipeline.store import UtteranceFeatures

log = logging.getLogger(__name__)

CONFIG_KEYS = ("checkpoint", "network", "fps", "detector", "face_selection", "min_face_probability", "margin",
               "detect_batch", "embed_batch", "batch_size", "device")


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
    modality = "visual"
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
