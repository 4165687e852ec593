"""Face embedders: per-frame features from the face track's crops, never detecting again.

`FaceEmbedder` reads `features/<corpus>/faces.h5` (pipeline/extract/face_track.py; the extract stage hands its
path over) and embeds the crops of the frames where a face was found, all the crops of a work unit together in
batches; a frame without a face gets a zero row and `frame_valid` false, and an utterance the track marks missing
keeps the track's reason. Subclasses say how crops become vectors: `denseface` here, `hf_vision` in hf_vision.py.
The store's attributes carry the track's detection settings, so the embedding names the faces it was computed on.
"""

from __future__ import annotations

import json
import logging
import os
from abc import abstractmethod
from collections.abc import Sequence
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
from pipeline.extract.face_track import FaceTrack
from pipeline.manifest import Utterance
from pipeline.store import StoreError, UtteranceFeatures

log = logging.getLogger(__name__)


class FaceEmbedder(Extractor):
    """Base of the extractors that read the face track. `face_track` is the track's path (the stage passes it)."""

    modality = "visual"
    has_frame_valid = True
    reads_face_track = True

    def __init__(self, config: dict[str, Any], corpus_root: Path, face_track: str | Path | None = None) -> None:
        super().__init__(config, corpus_root)
        self.face_track_path = Path(face_track) if face_track is not None else None
        self._track: FaceTrack | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_track": None}

    def track(self) -> FaceTrack:
        """The face track, opened lazily in the process that reads it."""
        if self._track is None:
            if self.face_track_path is None:
                raise ExtractorConfigError(f"{self.name}: no face track given", "the extractor's face_track",
                                           "run the faces stage first; `affectflow extract` passes "
                                           "features/<corpus>/faces.h5")
            self._track = FaceTrack(self.face_track_path)
        return self._track

    def track_attributes(self) -> dict[str, Any]:
        """What the embedding's store says about the faces: the frame hop and the track's detection settings."""
        track = self.track()
        return {"frame_hop_s": float(track.attrs["frame_hop_s"]),
                "face_track": json.dumps({"extractor_version": track.attrs["extractor_version"],
                                          "config": track.detection_config(),
                                          "crop_shape": track.attr_json("crop_shape")}, sort_keys=True)}

    def signature(self, utt: Utterance) -> str:
        """A finished shard is reused while the face track is the same file (size and modification time)."""
        try:
            st = os.stat(self.face_track_path) if self.face_track_path is not None else None
            stamp = f"{st.st_size}:{st.st_mtime_ns}" if st else "no track"
        except OSError:
            stamp = "unreadable"
        return json.dumps([utt.utt_id, stamp])

    @abstractmethod
    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Features [N, dim] float32 of N uint8 crops of the track (H, W gray or H, W, 3 RGB)."""

    def process(self, utts: Sequence[Utterance]) -> list[UtteranceFeatures]:
        self.setup()
        track = self.track()
        crops: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []
        valids: list[np.ndarray] = []
        for u, utt in enumerate(utts):
            if utt.utt_id not in track:
                raise StoreError(f"{utt.utt_id} is not in the face track", str(track.path),
                                 "re-run the faces stage for this corpus (dvc repro)")
            valid = track.frame_valid(utt.utt_id).astype(bool)
            valids.append(valid)
            if track.is_present(utt.utt_id) and valid.any():
                images = track.crops(utt.utt_id)
                for step in np.flatnonzero(valid):
                    crops.append(images[step])
                    owners.append((u, int(step)))
        features = self.embed(crops) if crops else np.zeros((0, self.dim), np.float32)
        values = [np.zeros((len(v), self.dim), np.float32) for v in valids]
        for row, (u, step) in enumerate(owners):
            values[u][step] = features[row]
        results = []
        for utt, value, valid in zip(utts, values, valids, strict=True):
            if track.is_present(utt.utt_id) and valid.any():
                results.append(UtteranceFeatures(value, True, valid))
            elif len(valid):
                results.append(UtteranceFeatures(value, False, valid, track.failure_of(utt.utt_id)))
            else:
                results.append(UtteranceFeatures.missing(track.failure_of(utt.utt_id), self.dim))
        return results


def as_gray(crop: np.ndarray, size: int) -> np.ndarray:
    """A track crop as the size x size grayscale image Denseface reads (unchanged when it already is one)."""
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    if gray.shape != (size, size):
        interpolation = cv2.INTER_AREA if gray.shape[0] > size else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (size, size), interpolation=interpolation)
    return gray


class DensefaceEmbedder(FaceEmbedder):
    """`denseface`: the face track's crops -> Denseface (DenseNet-BC on FER+), one 342-d row per sampled frame.

    A gray track at the checkpoint's input size (64) is fed as it is; an RGB or other-size track is converted to
    grayscale and resized first (then the store is not the bytes of a gray-64 track's).
    """

    name = "denseface"
    version = "2"
    KEYS = ("checkpoint", "network", "embed_batch", "batch_size", "device")

    def __init__(self, config: dict[str, Any], corpus_root: Path, face_track: str | Path | None = None) -> None:
        super().__init__(config, corpus_root, face_track)
        cfg = self.config
        absent = [k for k in self.KEYS if k not in cfg]
        if absent:
            raise ExtractorConfigError(f"denseface config lacks {absent} (needs {list(self.KEYS)}; detection "
                                       "settings moved to extractors.faces.config)")
        for key in ("embed_batch", "batch_size"):
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
        self._device: torch.device | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_model": None, "_device": None}

    @property
    def dim(self) -> int:
        return self.network.feature_dim

    def describe(self) -> dict[str, Any]:
        size = self.normalisation.size
        if self.track().crop_shape != (size, size):
            log.warning("denseface: the face track's crops are %s, the checkpoint reads %dx%d gray: converting each "
                        "crop (set extractors.faces.config crop_size: %d, color: gray to feed them as detected)",
                        "x".join(map(str, self.track().crop_shape)), size, size, size)
        return {
            "feature_names": json.dumps([f"denseface_{i:03d}" for i in range(self.dim)]),
            **self.track_attributes(),
            "model": "denseface",
            "model_sha256": self.checkpoint_sha256,
            "model_config": json.dumps({"network": self.network.to_dict(), "classes": self.classes,
                                        "normalisation": self.normalisation.to_dict()}, sort_keys=True),
            "library_versions": json.dumps(library_versions("torch", "opencv-python-headless", "numpy"),
                                           sort_keys=True),
            "compute": json.dumps(compute_facts(pick_device(self.config["device"])), sort_keys=True),
        }

    def setup(self) -> None:
        if self._model is not None:
            return
        self._device = pick_device(self.config["device"])
        # NHWC convolutions: measured 1.3x faster on CPU than NCHW, same results
        self._model = load_checkpoint(self.checkpoint_path).build().to(self._device,
                                                                        memory_format=torch.channels_last)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Denseface features [N, dim] of uint8 crops, in batches of `embed_batch`."""
        self.setup()
        norm = self.normalisation
        out = np.zeros((len(crops), self.dim), np.float32)
        size = int(self.config["embed_batch"])
        with torch.inference_mode():
            for lo in range(0, len(crops), size):
                images = np.stack([as_gray(c, norm.size) for c in crops[lo:lo + size]])
                batch = torch.from_numpy(images).unsqueeze(1).to(self._device)
                x = ((batch.float() - norm.mean) / norm.std).contiguous(memory_format=torch.channels_last)
                out[lo:lo + len(batch)] = self._model.features(x).cpu().numpy()
        return out
