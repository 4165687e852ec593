"""Audio loading: one segment of any media file as a mono float32 signal at the rate an extractor asks for.

WAV, FLAC, OGG and AIFF are read with soundfile, seeking straight to the segment. Everything else (mp3, and the
audio track of mp4/avi/flv/mkv videos) is decoded by the ffmpeg binary that imageio-ffmpeg ships, seeking on the
input side so that only the segment is decoded, downmixed and resampled by ffmpeg itself. A file soundfile cannot
open is handed to ffmpeg before it is called unreadable (WAV variants libsndfile lacks).

Problems raise `AudioLoadError` whose `reason` comes from the vocabulary of `pipeline.missing` (`missing_file`,
`unreadable`, `empty_file`, `empty_segment`, `no_audio_stream`, `lfs_pointer`); `detail` says what went wrong.
"""

from __future__ import annotations

import math
import os
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from pipeline.errors import AffectflowError
from pipeline.missing import (
    EMPTY_FILE,
    EMPTY_SEGMENT,
    LFS_POINTER,
    MISSING_FILE,
    NO_AUDIO_STREAM,
    UNREADABLE,
    is_lfs_pointer,
)

SOUNDFILE_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff"})


class AudioLoadError(AffectflowError, RuntimeError):
    """An audio segment that cannot be loaded; `reason` is one of the missing reasons imported above."""

    def __init__(self, reason: str, path: str | Path, detail: str = "") -> None:
        self.reason = reason
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f" ({detail})" if detail else ""))


@lru_cache(maxsize=1)
def ffmpeg_executable() -> str:
    """The ffmpeg binary shipped in the imageio-ffmpeg wheel (no system ffmpeg needed)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_version() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_version()


def load_audio(path: str | Path, start: float | None = None, end: float | None = None, *, sample_rate: int,
               decode_timeout_s: float = 120.0) -> np.ndarray:
    """Samples of `path` from `start` to `end` seconds (None: file start / file end), mono, at `sample_rate`.

    An `end` past the end of the file is cut to the file; a segment that holds no samples raises `empty`.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if start is not None and end is not None and not start < end:
        raise ValueError(f"{path}: segment start {start} must be before end {end}")
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise AudioLoadError(MISSING_FILE, path, "no such file") from None
    except OSError as err:
        raise AudioLoadError(UNREADABLE, path, err.strerror or str(err)) from None
    if not path.is_file():
        raise AudioLoadError(UNREADABLE, path, "not a regular file")
    if size == 0:
        raise AudioLoadError(EMPTY_FILE, path, "zero-byte file")
    if is_lfs_pointer(path):
        raise AudioLoadError(LFS_POINTER, path, "a Git LFS pointer, not audio: run `git lfs pull` in the corpus root")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            return _load_soundfile(path, start, end, sample_rate)
        except sf.LibsndfileError as err:
            try:
                return _load_ffmpeg(path, start, end, sample_rate, decode_timeout_s)
            except AudioLoadError as ff_err:
                if ff_err.reason != UNREADABLE:
                    raise
                raise AudioLoadError(UNREADABLE, path, f"soundfile: {err}; ffmpeg: {ff_err.detail}") from None
    return _load_ffmpeg(path, start, end, sample_rate, decode_timeout_s)


def _load_soundfile(path: Path, start: float | None, end: float | None, sample_rate: int) -> np.ndarray:
    with sf.SoundFile(path) as snd:
        native = snd.samplerate
        total = snd.frames
        first = 0 if start is None else int(round(start * native))
        last = total if end is None else min(total, int(round(end * native)))
        if total <= 0:
            raise AudioLoadError(EMPTY_FILE, path, "no samples in the file")
        if last <= first:
            raise AudioLoadError(EMPTY_SEGMENT, path, f"segment [{start}, {end}] s holds no samples "
                                              f"(file is {total / native:.3f} s)")
        snd.seek(first)
        data = snd.read(last - first, dtype="float32", always_2d=True)
    if len(data) == 0:
        raise AudioLoadError(EMPTY_SEGMENT, path, "no samples could be read for the segment")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float64).astype(np.float32)
    return resample(mono, native, sample_rate)


def resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling by the reduced ratio rate_out/rate_in (exact for 44.1 kHz -> 16 kHz: 160/441)."""
    if rate_in == rate_out:
        return np.ascontiguousarray(signal, dtype=np.float32)
    common = math.gcd(int(rate_in), int(rate_out))
    out = resample_poly(signal.astype(np.float64), rate_out // common, rate_in // common)
    return out.astype(np.float32)


def _load_ffmpeg(path: Path, start: float | None, end: float | None, sample_rate: int,
                 timeout_s: float) -> np.ndarray:
    cmd = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    if start:
        cmd += ["-ss", f"{start:.6f}"]
    cmd += ["-i", str(path)]
    if end is not None:
        cmd += ["-t", f"{end - (start or 0.0):.6f}"]
    cmd += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(int(sample_rate)),
            "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise AudioLoadError(UNREADABLE, path, f"ffmpeg did not finish within {timeout_s:g} s") from None
    message = proc.stderr.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        if "matches no streams" in message or "does not contain any stream" in message:
            raise AudioLoadError(NO_AUDIO_STREAM, path, "the file has no audio stream")
        last_line = message.splitlines()[-1] if message else f"ffmpeg exit status {proc.returncode}"
        raise AudioLoadError(UNREADABLE, path, last_line)
    usable = len(proc.stdout) - len(proc.stdout) % 4
    if usable == 0:
        raise AudioLoadError(EMPTY_SEGMENT, path, f"segment [{start}, {end}] s decodes to no samples")
    return np.frombuffer(proc.stdout[:usable], dtype="<f4").astype(np.float32)
