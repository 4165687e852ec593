"""Why a modality is missing for an utterance: the one vocabulary every extractor stores in `/failure`.

Each reason is a snake_case word with one meaning for every extractor, so a corpus's `expected_missing` list
(reasons that mark a modality missing without counting as failures) is written once. The README lists them.
Older spellings (`no face`, `empty transcript`, `video unreadable`, ...) are still accepted in `expected_missing`
with a warning. `is_lfs_pointer` is the one test for a Git LFS pointer file in place of media, a store or weights.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

NO_AUDIO = "no_audio"
NO_VIDEO = "no_video"
NO_TRANSCRIPT = "no_transcript"
EMPTY_TRANSCRIPT = "empty_transcript"
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
EMPTY_SEGMENT = "empty_segment"
NO_AUDIO_STREAM = "no_audio_stream"
UNREADABLE = "unreadable"
LFS_POINTER = "lfs_pointer"
SILENT = "silent"
TOO_SHORT = "too_short"
NO_FACE = "no_face"
NON_FINITE = "non_finite"
EXTRACTION_ERROR = "extraction_error"

REASONS: dict[str, str] = {
    NO_AUDIO: "the manifest gives the utterance no audio",
    NO_VIDEO: "the manifest gives the utterance no video",
    NO_TRANSCRIPT: "the manifest gives the utterance no text (null)",
    EMPTY_TRANSCRIPT: "the text is empty after cleaning, or the tokenizer makes no word piece of it",
    MISSING_FILE: "the media file named by the manifest does not exist",
    EMPTY_FILE: "the media file has zero bytes",
    EMPTY_SEGMENT: "the segment [start, end] holds no audio samples or video frames",
    NO_AUDIO_STREAM: "the media file has no audio stream",
    UNREADABLE: "the media file cannot be opened or decoded",
    LFS_POINTER: "the media file is a Git LFS pointer, not media (run `git lfs pull`)",
    SILENT: "the audio's peak is below `silence_dbfs`",
    TOO_SHORT: "the audio gives no more than `min_frames` frames",
    NO_FACE: "no face was found in any sampled frame",
    NON_FINITE: "the extractor's output holds NaN or infinity",
    EXTRACTION_ERROR: "the extractor raised on this utterance (logged with its traceback)",
}

# spellings of earlier versions -> the reasons they stood for
LEGACY: dict[str, tuple[str, ...]] = {
    "no face": (NO_FACE,),
    "no video": (NO_VIDEO,),
    "no audio": (NO_AUDIO,),
    "video missing": (MISSING_FILE,),
    "video unreadable": (UNREADABLE,),
    "no frames in segment": (EMPTY_SEGMENT,),
    "empty transcript": (EMPTY_TRANSCRIPT,),
    "no transcript": (NO_TRANSCRIPT,),
    "no word pieces in transcript": (EMPTY_TRANSCRIPT,),
    "empty": (EMPTY_FILE, EMPTY_SEGMENT),
    "too short": (TOO_SHORT,),
    "non finite": (NON_FINITE,),
    "lfs pointer": (LFS_POINTER,),
}

LFS_POINTER_PREFIX = b"version https://git-lfs"
LFS_POINTER_MAX_BYTES = 1024  # the spec's limit on a pointer file's size


class UnknownReasonError(ValueError):
    """An `expected_missing` entry that is no reason of the vocabulary."""


def canonical_reasons(values: Iterable[str], key: str = "expected_missing") -> list[str]:
    """The vocabulary's reasons for an `expected_missing` list; old spellings warn, unknown words raise."""
    out: list[str] = []
    for value in values:
        text = str(value)
        if text in REASONS:
            found: tuple[str, ...] = (text,)
        elif text.strip().lower() in LEGACY:
            found = LEGACY[text.strip().lower()]
            message = (f"{key}: {text!r} is an old spelling; write {', '.join(found)} (README, "
                       "\"Missing modalities\")")
            warnings.warn(message, FutureWarning, stacklevel=2)
            log.warning("%s", message)
        else:
            raise UnknownReasonError(f"{key}: {text!r} is not a missing reason; the reasons are "
                                     f"{', '.join(REASONS)}")
        out.extend(r for r in found if r not in out)
    return out


def is_lfs_pointer(path: str | Path) -> bool:
    """True when `path` is a Git LFS pointer file (a checkout made without git-lfs) rather than its content."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(LFS_POINTER_MAX_BYTES + 1)
    except OSError:
        return False
    return len(head) <= LFS_POINTER_MAX_BYTES and head.startswith(LFS_POINTER_PREFIX)


def is_lfs_pointer_text(text: str | None) -> bool:
    """True when a transcript read from a file is a Git LFS pointer's text."""
    return bool(text) and text.lstrip().startswith(LFS_POINTER_PREFIX.decode())
