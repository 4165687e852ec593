"""Audio loading on generated media: WAV/FLAC/MP3, video containers, segments, resampling, and broken inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.extract.audio import AudioLoadError, load_audio
from tests.audio_media import dominant_frequency, ffmpeg, tone, write_audio, write_video

RATE = 16000


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two-part tones (440 Hz for 1 s, then 880 Hz for 1 s) in every container the loader supports."""
    root = tmp_path_factory.mktemp("media")
    two_part_16k = tone([440, 880], 1.0, RATE)
    two_part_44k = tone([440, 880], 1.0, 44100)
    stereo = np.stack([two_part_16k, two_part_16k], axis=1)
    files = {
        "wav": write_audio(root / "tone.wav", two_part_16k, RATE),
        "wav44k": write_audio(root / "tone44k.wav", two_part_44k, 44100),
        "stereo": write_audio(root / "stereo.wav", stereo, RATE),
        "flac": write_audio(root / "tone.flac", two_part_44k, 44100),
    }
    files["mp3"] = root / "tone.mp3"
    ffmpeg("-i", str(files["wav44k"]), "-c:a", "libmp3lame", "-b:a", "128k", str(files["mp3"]))
    files["mp4"] = write_video(root / "clip.mp4", files["wav44k"], 2.0, "aac")
    files["avi"] = write_video(root / "clip.avi", files["wav44k"], 2.0, "pcm_s16le")
    files["flv"] = write_video(root / "clip.flv", files["wav44k"], 2.0, "libmp3lame")
    files["silent_video"] = write_video(root / "mute.mp4", None, 1.0)
    return files


@pytest.mark.parametrize("kind", ["wav", "wav44k", "stereo", "flac", "mp3", "mp4", "avi", "flv"])
def test_whole_file_is_mono_at_the_requested_rate(media: dict[str, Path], kind: str) -> None:
    signal = load_audio(media[kind], sample_rate=RATE)
    assert signal.dtype == np.float32 and signal.ndim == 1
    assert abs(len(signal) - 2 * RATE) <= 0.05 * RATE  # mp3 in flv keeps the encoder delay and padding
    assert dominant_frequency(signal[: RATE * 9 // 10], RATE) == pytest.approx(440, abs=3)
    assert dominant_frequency(signal[RATE + RATE // 10: 19 * RATE // 10], RATE) == pytest.approx(880, abs=3)
    rms = float(np.sqrt(np.mean(signal[RATE // 10: RATE * 9 // 10] ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.05)  # the downmix averages channels, it does not sum them


@pytest.mark.parametrize("kind", ["wav", "wav44k", "flac", "mp3", "mp4", "avi"])
def test_segment_cuts_the_requested_stretch(media: dict[str, Path], kind: str) -> None:
    second_tone = load_audio(media[kind], 1.2, 1.7, sample_rate=RATE)
    assert abs(len(second_tone) - RATE // 2) <= 2
    assert dominant_frequency(second_tone, RATE) == pytest.approx(880, abs=3)
    first_tone = load_audio(media[kind], None, 0.5, sample_rate=RATE)
    assert abs(len(first_tone) - RATE // 2) <= 2
    assert dominant_frequency(first_tone, RATE) == pytest.approx(440, abs=3)


def test_resampling_44k_matches_a_native_16k_file(media: dict[str, Path]) -> None:
    native = load_audio(media["wav"], 0.25, 1.75, sample_rate=RATE)
    resampled = load_audio(media["wav44k"], 0.25, 1.75, sample_rate=RATE)
    assert len(native) == len(resampled) == int(1.5 * RATE)
    inner = slice(200, -200)  # away from the filter's edge effects
    assert np.abs(native[inner] - resampled[inner]).max() < 0.02


def test_segment_sample_position_is_exact_for_wav(tmp_path: Path) -> None:
    ramp = (np.arange(RATE * 2) / (RATE * 2)).astype(np.float32)
    path = write_audio(tmp_path / "ramp.wav", ramp, RATE)
    cut = load_audio(path, 0.5, 0.75, sample_rate=RATE)
    np.testing.assert_allclose(cut, ramp[RATE // 2: 3 * RATE // 4], atol=1e-4)


def test_end_past_the_file_is_cut_to_the_file(media: dict[str, Path]) -> None:
    assert len(load_audio(media["wav"], 1.5, 9.0, sample_rate=RATE)) == RATE // 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioLoadError) as err:
        load_audio(tmp_path / "nothing.wav", sample_rate=RATE)
    assert err.value.reason == "missing_file" and "nothing.wav" in str(err.value)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp4", ".mp3"])
def test_corrupt_file_is_unreadable(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioLoadError) as err:
        load_audio(path, sample_rate=RATE)
    assert err.value.reason == "unreadable" and str(path) in str(err.value)


@pytest.mark.parametrize("suffix", [".wav", ".mp4"])
def test_zero_byte_file_is_empty(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"zero{suffix}"
    path.write_bytes(b"")
    with pytest.raises(AudioLoadError) as err:
        load_audio(path, sample_rate=RATE)
    assert err.value.reason == "empty_file"


def test_wav_with_no_samples_is_empty(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "none.wav", np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioLoadError) as err:
        load_audio(path, sample_rate=RATE)
    assert err.value.reason == "empty_file"


@pytest.mark.parametrize("kind", ["wav", "mp4"])
def test_segment_after_the_end_is_empty(media: dict[str, Path], kind: str) -> None:
    with pytest.raises(AudioLoadError) as err:
        load_audio(media[kind], 5.0, 6.0, sample_rate=RATE)
    assert err.value.reason == "empty_segment"


def test_video_without_audio_stream(media: dict[str, Path]) -> None:
    with pytest.raises(AudioLoadError) as err:
        load_audio(media["silent_video"], sample_rate=RATE)
    assert err.value.reason == "no_audio_stream"


def test_bad_segment_bounds_are_a_caller_error(media: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="before end"):
        load_audio(media["wav"], 1.0, 0.5, sample_rate=RATE)
