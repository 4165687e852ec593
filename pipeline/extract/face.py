"""Video sampling and face detection helpers: what the `faces` stage (pipeline/extract/face_track.py) runs.

MTCNN runs once per corpus in the `faces` stage and `denseface` / `hf_vision` embed its crops (face_embed.py,
hf_vision.py). The earlier one-pass extractor (video -> MTCNN -> crop -> Denseface in one class) lives on in
tests/denseface_one_pass.py as the reference the face track is checked against, and for benchmarks/bench_face.py.

`sample_segment` decodes an utterance's segment of its video with OpenCV (seek to the start frame, stop at the
end) and samples frames at `fps`; `face_region` cuts out the manifest's `face_region` (the whole frame, or the left
/ right half of IEMOCAP's split screen); `select_face` keeps one MTCNN face per frame (the largest or the most
confident) and `crop_face` crops it square with a margin and resizes it. A missing, empty, undecodable or
Git-LFS-pointer video raises `VideoError` with its reason (`pipeline.missing`).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline import missing
from pipeline.errors import AffectflowError
from pipeline.extract import ExtractorConfigError

log = logging.getLogger(__name__)

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


def check_detection_config(config: dict[str, Any], who: str, keys: Sequence[str]) -> None:
    """The face detection settings (fps, MTCNN, selection, margin, batches), checked before any work."""
    absent = [k for k in keys if k not in config]
    if absent:
        raise ExtractorConfigError(f"{who} config lacks {absent} (needs {list(keys)})")
    det = config["detector"]
    if not isinstance(det, dict) or [k for k in DETECTOR_KEYS if k not in det]:
        raise ExtractorConfigError(f"{who} detector must hold {list(DETECTOR_KEYS)}, got {det!r}")
    thresholds = det["thresholds"]
    if len(thresholds) != 3 or not all(0 < float(t) < 1 for t in thresholds):
        raise ExtractorConfigError(f"detector.thresholds: three values in (0, 1) for P-, R- and O-Net, got "
                                   f"{thresholds!r}")
    if not det["min_face_size"] >= 12 or not 0 < det["factor"] < 1:
        raise ExtractorConfigError(f"detector needs min_face_size >= 12 and factor in (0, 1), got {det!r}")
    if not config["fps"] > 0:
        raise ExtractorConfigError(f"fps must be positive, got {config['fps']!r}")
    if config["face_selection"] not in SELECTIONS:
        raise ExtractorConfigError(f"face_selection must be one of {SELECTIONS}, got {config['face_selection']!r}")
    if not 0 <= config["min_face_probability"] < 1 or not config["margin"] >= 0:
        raise ExtractorConfigError(f"min_face_probability in [0, 1) and margin >= 0 needed, got "
                                   f"{config['min_face_probability']!r}, {config['margin']!r}")
    for key in ("detect_batch", "batch_size"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ExtractorConfigError(f"{key} must be a positive integer, got {config[key]!r}")
