"""The FER2013 / FER+ face-expression format: reader (for training Denseface) and writer (for fixtures and the demo).

`fer2013.csv` (Kaggle/ICML 2013): header `emotion,pixels,Usage`; one 48x48 grayscale face per row as 2304
space-separated integers 0..255; `emotion` 0..6 = angry, disgust, fear, happy, sad, surprise, neutral; `Usage`
Training / PublicTest / PrivateTest.

`fer2013new.csv` (Microsoft FER+): header `Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,
contempt,unknown,NF`; ten crowd votes per face, rows aligned one to one with `fer2013.csv`. FER+ relabels the
faces with its own 8 classes and discards some: rows with no image name, rows whose top vote is `unknown` or `NF`
(not a face), and, in majority mode, rows where no emotion has more than half the votes. As FER+ does, single
votes can be discarded as outliers before anything is decided.

Targets are either the majority emotion (one-hot) or the vote distribution over the 8 emotions (config
`targets`); without a FER+ file the 7 FER2013 labels are used as they are. Every error names the file and line.
"""

from __future__ import annotations

import csv
import logging
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import AffectflowError

log = logging.getLogger(__name__)

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS_CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_VOTE_COLUMNS = (*FERPLUS_CLASSES, "unknown", "NF")
USAGES = ("Training", "PublicTest", "PrivateTest")
IMAGE_SIDE = 48
LINE_END = "\r\n"  # what the writers end rows with: CSV's own (RFC 4180, Python's csv default)
TARGET_MODES = ("majority", "distribution")
READER_KEYS = ("targets", "drop_single_votes", "majority_share")


class FerFormatError(AffectflowError, ValueError):
    """A FER-format file that breaks the format; the message names the file and line."""

    def __init__(self, message: str, *, source: str | Path, line: int | None = None) -> None:
        self.reason = message
        self.source = str(source)
        self.line = line
        where = f"{source}:line {line}" if line is not None else str(source)
        super().__init__(f"{where}: {message}")


@dataclass
class FerSet:
    """Faces with their targets. images [N, 48, 48] uint8; targets [N, C] float32 summing to 1 (one-hot in
    majority mode); labels [N] int64 = argmax of targets; usage [N] one of USAGES; rows [N] the 0-based data row
    in fer2013.csv (so a face can be traced back)."""

    images: np.ndarray
    targets: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    rows: np.ndarray
    classes: list[str]
    dropped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, usage: str) -> FerSet:
        """The faces of one Usage (Training, PublicTest or PrivateTest)."""
        if usage not in USAGES:
            raise ValueError(f"usage must be one of {USAGES}, got {usage!r}")
        keep = self.usage == usage
        return FerSet(self.images[keep], self.targets[keep], self.labels[keep], self.usage[keep], self.rows[keep],
                      list(self.classes), Counter())

    def counts(self) -> dict[str, dict[str, int]]:
        """Faces per usage and class (for logs and the training metrics)."""
        out: dict[str, dict[str, int]] = {}
        for usage in USAGES:
            labels = self.labels[self.usage == usage]
            out[usage] = {name: int((labels == k).sum()) for k, name in enumerate(self.classes)}
        return out


def check_reader_config(config: dict[str, Any]) -> None:
    missing = [k for k in READER_KEYS if k not in config]
    if missing:
        raise ValueError(f"FER reader config lacks {missing} (needs {list(READER_KEYS)})")
    if config["targets"] not in TARGET_MODES:
        raise ValueError(f"targets must be one of {TARGET_MODES}, got {config['targets']!r}")
    share = config["majority_share"]
    if not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise ValueError(f"majority_share must lie in [0, 1), got {share!r}")


def _columns(header: list[str] | None, wanted: Sequence[str], source: Path) -> list[int]:
    if header is None:
        raise FerFormatError("empty file (no header)", source=source, line=1)
    names = [h.strip() for h in header]
    absent = [w for w in wanted if w not in names]
    if absent:
        raise FerFormatError(f"header {names} lacks the columns {absent} (expected {list(wanted)})",
                             source=source, line=1)
    return [names.index(w) for w in wanted]


def _data_rows(path: Path, wanted: Sequence[str]) -> Iterator[tuple[int, list[str], list[int]]]:
    """(line number, fields, the wanted columns' positions) for each non-blank row after the header; a row too
    short for the wanted columns fails naming its line."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        cols = _columns(next(reader, None), wanted, path)
        width = max(cols) + 1
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < width:
                raise FerFormatError(f"{len(row)} fields, expected at least {width}", source=path, line=line)
            yield line, row, cols


def _parse_pixels(text: str, source: Path, line: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            values = np.fromstring(text, dtype=np.int64, sep=" ")
        except (ValueError, DeprecationWarning):
            values = None
    if values is None:
        bad = next((tok for tok in text.split() if not tok.lstrip("-").isdigit()), text[:20])
        raise FerFormatError(f"pixels: {bad!r} is not an integer", source=source, line=line)
    if values.size != IMAGE_SIDE * IMAGE_SIDE:
        raise FerFormatError(f"pixels: {values.size} values, expected {IMAGE_SIDE * IMAGE_SIDE} "
                             f"({IMAGE_SIDE}x{IMAGE_SIDE})", source=source, line=line)
    if values.min() < 0 or values.max() > 255:
        raise FerFormatError(f"pixels: values must lie in 0..255, found {values.min()}..{values.max()}",
                             source=source, line=line)
    return values.astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE)


def _usage(value: str, source: Path, line: int) -> str:
    usage = value.strip()
    if usage not in USAGES:
        raise FerFormatError(f"Usage {usage!r} is not one of {USAGES}", source=source, line=line)
    return usage


def read_fer2013(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """images [N, 48, 48] uint8, emotion [N] int64 (0..6), usage [N], and each row's line number."""
    path = Path(path)
    images, emotions, usages, lines = [], [], [], []
    for line, row, (col_emotion, col_pixels, col_usage) in _data_rows(path, ("emotion", "pixels", "Usage")):
        try:
            emotion = int(row[col_emotion])
        except ValueError:
            raise FerFormatError(f"emotion {row[col_emotion]!r} is not an integer", source=path,
                                 line=line) from None
        if not 0 <= emotion < len(FER2013_CLASSES):
            raise FerFormatError(f"emotion {emotion} outside 0..{len(FER2013_CLASSES) - 1}", source=path,
                                 line=line)
        images.append(_parse_pixels(row[col_pixels], path, line))
        emotions.append(emotion)
        usages.append(_usage(row[col_usage], path, line))
        lines.append(line)
    if not images:
        raise FerFormatError("no data rows", source=path)
    return (np.stack(images), np.asarray(emotions, np.int64), np.asarray(usages, dtype=object), lines)


def read_ferplus_votes(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str], list[int]]:
    """votes [N, 10] int64 in FERPLUS_VOTE_COLUMNS order, usage [N], image names, and each row's line number."""
    path = Path(path)
    votes, usages, names, lines = [], [], [], []
    for line, row, cols in _data_rows(path, ("Usage", "Image name", *FERPLUS_VOTE_COLUMNS)):
        counts = []
        for name, col in zip(FERPLUS_VOTE_COLUMNS, cols[2:], strict=True):
            try:
                count = int(row[col])
            except ValueError:
                raise FerFormatError(f"{name} votes {row[col]!r} is not an integer", source=path,
                                     line=line) from None
            if count < 0:
                raise FerFormatError(f"{name} votes {count} is negative", source=path, line=line)
            counts.append(count)
        votes.append(counts)
        usages.append(_usage(row[cols[0]], path, line))
        names.append(row[cols[1]].strip())
        lines.append(line)
    if not votes:
        raise FerFormatError("no data rows", source=path)
    return np.asarray(votes, np.int64), np.asarray(usages, dtype=object), names, lines


def ferplus_targets(votes: np.ndarray, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """targets [N, 8] float32 and the reason each row is dropped ("" = kept), from FER+ vote counts [N, 10]."""
    check_reader_config(config)
    v = np.asarray(votes, np.float64).copy()
    if config["drop_single_votes"]:
        v[v <= 1] = 0.0  # FER+'s outlier removal: an emotion seen by a single annotator is noise
    total = v.sum(axis=1)
    top = v.argmax(axis=1)  # first maximum: an emotion tied with unknown/NF wins, as in FER+
    emotions = v[:, :len(FERPLUS_CLASSES)]
    reasons = np.full(len(v), "", dtype=object)
    reasons[top == FERPLUS_VOTE_COLUMNS.index("NF")] = "not a face"
    reasons[top == FERPLUS_VOTE_COLUMNS.index("unknown")] = "unknown majority"
    reasons[total == 0] = "no votes"
    targets = np.zeros_like(emotions)
    kept = reasons == ""
    if config["targets"] == "majority":
        best = emotions.argmax(axis=1)
        share = np.divide(emotions.max(axis=1), total, out=np.zeros_like(total), where=total > 0)
        reasons[kept & (share <= config["majority_share"])] = "no majority"
        kept = reasons == ""
        targets[np.flatnonzero(kept), best[kept]] = 1.0
    else:
        sums = emotions.sum(axis=1, keepdims=True)
        reasons[kept & (sums[:, 0] == 0)] = "no emotion votes"
        kept = reasons == ""
        targets[kept] = emotions[kept] / sums[kept]
    return targets.astype(np.float32), reasons


def read_fer(fer2013: str | Path, ferplus: str | Path | None, config: dict[str, Any]) -> FerSet:
    """Faces of `fer2013.csv` with FER+ targets from `fer2013new.csv` (or FER2013's own 7 labels without it).

    config: targets (majority | distribution), drop_single_votes (bool), majority_share (a majority needs more
    than this share of all votes; FER+ uses 0.5). Rows FER+ discards are dropped and counted in `dropped`.
    """
    check_reader_config(config)
    images, emotions, usage, lines = read_fer2013(fer2013)
    rows = np.arange(len(images), dtype=np.int64)
    if ferplus is None:
        targets = np.eye(len(FER2013_CLASSES), dtype=np.float32)[emotions]
        fer_set = FerSet(images, targets, emotions, usage, rows, list(FER2013_CLASSES))
        log.info("read %d FER2013 faces from %s", len(fer_set), fer2013)
        return fer_set
    votes, plus_usage, names, plus_lines = read_ferplus_votes(ferplus)
    if len(votes) != len(images):
        raise FerFormatError(f"{len(votes)} data rows, but {fer2013} has {len(images)}: FER+ rows must align one "
                             f"to one with fer2013.csv", source=ferplus)
    differing = np.flatnonzero(plus_usage != usage)
    if len(differing):
        i = differing[0]
        raise FerFormatError(f"Usage {plus_usage[i]!r} differs from {usage[i]!r} on line {lines[i]} of {fer2013}: "
                             f"the files are not aligned", source=ferplus, line=plus_lines[i])
    targets, reasons = ferplus_targets(votes, config)
    reasons[np.asarray([not n for n in names], bool)] = "no image"
    keep = reasons == ""
    dropped = Counter(str(r) for r in reasons[~keep])
    fer_set = FerSet(images[keep], targets[keep], targets[keep].argmax(axis=1).astype(np.int64), usage[keep],
                     rows[keep], list(FERPLUS_CLASSES), dropped)
    log.info("read %d FER+ faces (%s targets) from %s and %s; dropped %d (%s)", len(fer_set), config["targets"],
             fer2013, ferplus, sum(dropped.values()),
             ", ".join(f"{r}: {c}" for r, c in dropped.most_common()) or "none")
    return fer_set


def write_fer2013(path: str | Path, images: np.ndarray, emotions: Sequence[int], usage: Sequence[str]) -> None:
    """Write faces [N, 48, 48] uint8 in the fer2013.csv format (fixtures, the demo corpus)."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, {IMAGE_SIDE}, {IMAGE_SIDE}], got {images.dtype} {images.shape}")
    if not len(images) == len(emotions) == len(usage):
        raise ValueError(f"{len(images)} images, {len(emotions)} emotions, {len(usage)} usages")
    for emotion, use in zip(emotions, usage, strict=True):
        if not 0 <= int(emotion) < len(FER2013_CLASSES) or use not in USAGES:
            raise ValueError(f"bad row: emotion {emotion!r}, usage {use!r}")
    _write_rows(path, ["emotion", "pixels", "Usage"],
                ([int(emotion), " ".join(map(str, image.reshape(-1).tolist())), use]
                 for image, emotion, use in zip(images, emotions, usage, strict=True)))


def write_ferplus(path: str | Path, votes: np.ndarray, usage: Sequence[str],
                  image_names: Sequence[str] | None = None) -> None:
    """Write vote counts [N, 10] (FERPLUS_VOTE_COLUMNS order) in the fer2013new.csv format."""
    votes = np.asarray(votes)
    if votes.ndim != 2 or votes.shape[1] != len(FERPLUS_VOTE_COLUMNS):
        raise ValueError(f"votes must be [N, {len(FERPLUS_VOTE_COLUMNS)}], got {votes.shape}")
    names = list(image_names) if image_names is not None else [f"fer{i:07d}.png" for i in range(len(votes))]
    if not len(votes) == len(usage) == len(names):
        raise ValueError(f"{len(votes)} vote rows, {len(usage)} usages, {len(names)} image names")
    _write_rows(path, ["Usage", "Image name", *FERPLUS_VOTE_COLUMNS],
                ([use, name, *(int(v) for v in row)] for row, use, name in zip(votes, usage, names, strict=True)))


def _write_rows(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator=LINE_END)
        writer.writerow(header)
        writer.writerows(rows)
