"""The demo's faces: frames built from a real photograph (`skimage.data.astronaut()`) with an emotion-dependent
deformation of mouth and brows (scaled by the utterance's face intensity), the jaw movement of a talking face, head
motion and lighting jitter, occlusion; and the FER2013/FER+-format set of expression crops Denseface trains on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipeline.corpora.demo_plan import Plan, Speaker
from pipeline.denseface.fer import FERPLUS_CLASSES, FERPLUS_VOTE_COLUMNS, IMAGE_SIDE, write_fer2013, write_ferplus

# Geometry of the astronaut photo (512x512), measured with facenet-pytorch's MTCNN: the face box is
# x 181-268, y 62-172. The demo frame is the square crop below, resized to `video.size`.
PHOTO_CROP = (134, 30, 314, 210)  # x0, y0, x1, y1 in the photo
# Landmarks in the crop's unit square (MTCNN on the 128-px frame divided by 128), brows set above the eyes.
LANDMARKS = {
    "eye_l": (0.395, 0.396), "eye_r": (0.630, 0.406), "nose": (0.510, 0.554),
    "mouth_l": (0.373, 0.611), "mouth_r": (0.622, 0.620), "mouth_c": (0.497, 0.625),
    "lip_up": (0.497, 0.596), "lip_low": (0.497, 0.660),
    "brow_li": (0.445, 0.335), "brow_lo": (0.335, 0.345), "brow_ri": (0.575, 0.340), "brow_ro": (0.690, 0.352),
    "cheek_l": (0.360, 0.520), "cheek_r": (0.650, 0.525),
}
FACE_BOX = (0.248, 0.175, 0.746, 0.794)  # MTCNN's box on the frame, unit square
# the FER2013 label column's codes for FER+'s classes
FER2013_CODE = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6,
                "contempt": 6}
CORPUS_TO_FER = {"ang": "anger", "hap": "happiness", "neu": "neutral", "sad": "sadness"}

# Displacements (in unit-square units at full intensity) of landmarks per facial expression.
EXPRESSIONS: dict[str, dict[str, tuple[float, float]]] = {
    "neutral": {},
    "happiness": {"mouth_l": (-0.025, -0.04), "mouth_r": (0.025, -0.04), "cheek_l": (0.0, -0.02),
                  "cheek_r": (0.0, -0.02), "lip_low": (0.0, 0.015)},
    "sadness": {"mouth_l": (0.0, 0.06), "mouth_r": (0.0, 0.06), "brow_li": (0.0, -0.04),
                "brow_ri": (0.0, -0.04), "brow_lo": (0.0, 0.025), "brow_ro": (0.0, 0.025), "lip_low": (0.0, -0.015),
                "cheek_l": (0.0, 0.015), "cheek_r": (0.0, 0.015)},
    "anger": {"brow_li": (0.02, 0.045), "brow_ri": (-0.02, 0.045), "brow_lo": (0.0, 0.02), "brow_ro": (0.0, 0.02),
              "lip_up": (0.0, 0.015), "lip_low": (0.0, -0.02), "mouth_l": (0.015, 0.0), "mouth_r": (-0.015, 0.0)},
    "surprise": {"brow_li": (0.0, -0.05), "brow_ri": (0.0, -0.05), "brow_lo": (0.0, -0.045),
                 "brow_ro": (0.0, -0.045), "lip_low": (0.0, 0.06), "mouth_l": (0.01, 0.01), "mouth_r": (-0.01, 0.01)},
    "disgust": {"lip_up": (0.0, -0.035), "nose": (0.0, -0.015), "brow_li": (0.01, 0.03), "brow_ri": (-0.01, 0.03),
                "mouth_l": (0.0, 0.02), "mouth_r": (0.0, 0.02)},
    "fear": {"brow_li": (0.01, -0.04), "brow_ri": (-0.01, -0.04), "mouth_l": (-0.035, 0.015),
             "mouth_r": (0.035, 0.015), "lip_low": (0.0, 0.03)},
    "contempt": {"mouth_r": (0.03, -0.04), "mouth_l": (0.0, 0.01)},
}

# The jaw of a talking face (unit-square units at articulation 1): the lower lip drops, the corners come in and
# down. It moves the mouth as much as the expressions do, so speech masks the mouth's expression cues.
ARTICULATION: dict[str, tuple[float, float]] = {"lip_low": (0.0, 0.05), "lip_up": (0.0, -0.01),
                                                "mouth_l": (0.012, 0.01), "mouth_r": (-0.012, 0.01)}


def base_face(size: int) -> np.ndarray:
    from skimage import data

    x0, y0, x1, y1 = PHOTO_CROP
    photo = data.astronaut()[y0:y1, x0:x1]
    return cv2.resize(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), (size, size), interpolation=cv2.INTER_AREA)


def expression_field(expression: str, size: int) -> np.ndarray:
    """[size, size, 2] displacement (pixels) that moves the landmarks as the expression does at intensity 1."""
    return displacement_field(EXPRESSIONS[expression], size)


def displacement_field(moves: dict[str, tuple[float, float]], size: int) -> np.ndarray:
    """[size, size, 2] displacement (pixels): each landmark moved by (dx, dy), smoothly around it."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    field = np.zeros((size, size, 2), np.float32)
    radius = 0.07 * size
    for name, (dx, dy) in moves.items():
        cx, cy = LANDMARKS[name]
        weight = np.exp(-((xx - cx * size) ** 2 + (yy - cy * size) ** 2) / (2 * radius**2))
        field[..., 0] += dx * size * weight
        field[..., 1] += dy * size * weight
    return field


class FaceRenderer:
    """Renders frames of the demo face: expression warp, identity tint/flip/scale, head motion, lighting."""

    def __init__(self, size: int, strength: float = 1.0) -> None:
        self.size = size
        self.face = base_face(size).astype(np.float32)
        self.fields = {name: strength * expression_field(name, size) for name in EXPRESSIONS}
        self.jaw = displacement_field(ARTICULATION, size)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        self.grid = np.stack([xx, yy], axis=-1)
        bank = np.random.default_rng(12345)
        self.noise = bank.normal(0, 2.0, (16, size, size, 3)).astype(np.float32)  # sensor noise, drawn by index
        occluder = bank.normal(70, 25, (8, size, size, 3)).astype(np.float32)
        self.occluders = np.stack([cv2.GaussianBlur(o, (0, 0), 3) for o in occluder])

    def render(self, expression: str, intensity: float, speaker: Speaker, dx: float, dy: float, angle: float,
               gain: float, rng: np.random.Generator, occluded: bool, jaw: float = 0.0) -> np.ndarray:
        field = intensity * self.fields[expression] + (jaw * self.jaw if jaw else 0.0)
        maps = self.grid - field  # inverse map: sample where the landmark came from
        img = cv2.remap(self.face, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        centre = (self.size / 2, self.size / 2)
        affine = cv2.getRotationMatrix2D(centre, angle, speaker.scale)
        affine[:, 2] += (dx, dy)
        img = cv2.warpAffine(img, affine, (self.size, self.size), borderMode=cv2.BORDER_REFLECT)
        if speaker.flip:
            img = img[:, ::-1]
        img = cv2.multiply(img, np.asarray(speaker.tint, np.float32) * gain, dtype=cv2.CV_32F)
        img = cv2.add(np.ascontiguousarray(img), self.noise[int(rng.integers(len(self.noise)))])
        if occluded:  # an object in front of the whole face
            x0, y0, x1, y1 = (int(v * self.size) for v in (0.12, 0.05, 0.88, 0.95))
            img[y0:y1, x0:x1] = self.occluders[int(rng.integers(len(self.occluders)))][y0:y1, x0:x1]
        return np.clip(img, 0, 255).astype(np.uint8)


def jaw_track(plan: Plan, n_frames: int, articulation: float) -> np.ndarray:
    """Per frame jaw opening of the talking face: syllables open it to a random height, a pause closes it."""
    if articulation <= 0:
        return np.zeros(n_frames)
    rng = np.random.default_rng([*plan.seed, 4])  # its own stream: articulation 0 leaves the other draws as they were
    opening = rng.uniform(0.2, 1.0, n_frames) * (rng.random(n_frames) >= 0.15)
    return articulation * opening


def render_clip(plan: Plan, renderer: FaceRenderer, n_frames: int,
                articulation: float = 0.0) -> tuple[list[np.ndarray], list[bool]]:
    rng = np.random.default_rng([*plan.seed, 2])
    jaw = jaw_track(plan, n_frames, articulation)
    expression = CORPUS_TO_FER[plan.emotion]
    visible = np.ones(n_frames, bool)
    if plan.face_mode == "absent":
        visible[:] = False
    elif plan.face_mode == "partial" and n_frames >= 4:
        length = max(1, int(n_frames * rng.uniform(0.2, 0.5)))
        start = int(rng.integers(0, n_frames - length + 1))
        visible[start:start + length] = False
    phase = rng.uniform(0, 2 * math.pi, size=3)
    amp = rng.uniform(1.0, 0.03 * renderer.size, size=2)
    frames = []
    for i in range(n_frames):
        t = i / max(n_frames - 1, 1)
        ramp = min(1.0, 0.3 + t / 0.4)  # expression builds up over the first part of the clip
        frames.append(renderer.render(
            expression, plan.face_intensity * ramp, plan.speaker,
            dx=float(amp[0] * math.sin(2 * math.pi * 0.7 * t + phase[0])),
            dy=float(amp[1] * math.sin(2 * math.pi * 0.5 * t + phase[1])),
            angle=float(3.0 * math.sin(2 * math.pi * 0.4 * t + phase[2])),
            gain=float(rng.uniform(0.9, 1.1)), rng=rng, occluded=not visible[i], jaw=float(jaw[i])))
    return frames, visible.tolist()


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with the mp4v codec")
    for frame in frames:
        writer.write(frame)
    writer.release()


def write_fer_set(root: Path, options: dict[str, Any], speakers: list[Speaker], seed: int) -> int:
    """FER2013 (`fer2013.csv`) + FER+ (`fer2013new.csv`) files of 48x48 grayscale crops of the demo face.

    Crops follow the face box the detector gives (with jitter), so the network sees what the extractor shows it.
    Like FER+'s photographs, these are posed expressions of a face that is not talking: the corpus's faces are
    subtler and talk (`face_intensity`, `articulation`), the domain gap a FER-trained encoder meets on IEMOCAP.
    `options` are the resolved demo options (`demo_plan.resolve_demo_options`).
    """
    fer, size = options["fer"], int(options["video"]["size"])
    per_class = {"Training": int(fer["train_per_class"]), "PublicTest": int(fer["test_per_class"]),
                 "PrivateTest": int(fer["test_per_class"])}
    margin = float(fer["margin"])
    renderer = FaceRenderer(size, float(options["expression_strength"]))
    rng = np.random.default_rng([seed, 9])
    faces, emotions, usages, votes = [], [], [], []
    for usage, count in per_class.items():
        for index in range(count * len(FERPLUS_CLASSES)):
            expression = FERPLUS_CLASSES[index % len(FERPLUS_CLASSES)]
            faces.append(_fer_crop(renderer, expression, speakers[int(rng.integers(len(speakers)))], size, margin,
                                   rng))
            emotions.append(FER2013_CODE[expression])
            usages.append(usage)
            votes.append(_fer_votes(expression, rng))
    write_fer2013(root / "fer" / "fer2013.csv", np.stack(faces), emotions, usages)
    write_ferplus(root / "fer" / "fer2013new.csv", np.stack(votes), usages)  # image names fer0000000.png, ...
    return len(faces)


def _fer_crop(renderer: FaceRenderer, expression: str, speaker: Speaker, size: int, margin: float,
              rng: np.random.Generator) -> np.ndarray:
    """One posed expression of the speaker's face, cut out around the detector's box (with jitter), 48x48 gray."""
    dx, dy = rng.uniform(-0.03, 0.03, size=2) * size
    img = renderer.render(expression, float(rng.uniform(0.4, 1.0)) * speaker.expressiveness, speaker,
                          float(dx), float(dy), float(rng.uniform(-3, 3)), float(rng.uniform(0.9, 1.1)),
                          rng, occluded=False)
    bx0, by0, bx1, by1 = (v * size for v in FACE_BOX)
    if speaker.flip:
        bx0, bx1 = size - bx1, size - bx0
    cx, cy = (bx0 + bx1) / 2 + dx, (by0 + by1) / 2 + dy
    half = max(bx1 - bx0, by1 - by0) * (1 + margin) / 2 * speaker.scale * rng.uniform(0.95, 1.05)
    x0, y0 = int(round(cx - half)), int(round(cy - half))
    side = int(round(2 * half))
    padded = cv2.copyMakeBorder(img, side, side, side, side, cv2.BORDER_REPLICATE)
    crop = padded[y0 + side: y0 + 2 * side, x0 + side: x0 + 2 * side]
    return cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (IMAGE_SIDE, IMAGE_SIDE), interpolation=cv2.INTER_AREA)


def _fer_votes(expression: str, rng: np.random.Generator) -> np.ndarray:
    """Ten crowd votes (FER+'s columns), six to ten of them for the posed expression, the rest anywhere."""
    votes = np.zeros(len(FERPLUS_VOTE_COLUMNS), int)
    main = int(rng.integers(6, 11))
    votes[FERPLUS_CLASSES.index(expression)] = main
    for _ in range(10 - main):
        votes[int(rng.integers(len(FERPLUS_CLASSES)))] += 1
    return votes
