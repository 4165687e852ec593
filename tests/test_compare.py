"""The openSMILE extractors on generated audio: F0 of a known tone, the LLD/delta frame join, downsampling,
failure reasons, float32 range, and stores that are byte-identical whatever the number of workers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import opensmile
import pytest
from scipy.signal import resample_poly

from pipeline.extract import ExtractorConfigError, extractor_class
from pipeline.extract.compare import CompareExtractor, CompareUtteranceExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Segment, Utterance
from pipeline.store import FeatureStore
from tests.audio_media import tone, write_audio, write_video

RATE = 16000
FRAME_CONFIG: dict[str, Any] = {"sample_rate": RATE, "downsample": 1, "min_frames": 10, "silence_dbfs": -90.0,
                                "decode_timeout_s": 60, "batch_size": 2}
UTTERANCE_CONFIG: dict[str, Any] = {**{k: v for k, v in FRAME_CONFIG.items() if k != "downsample"},
                                    "feature_set": "eGeMAPSv02"}


def utterance(utt_id: str, path: str | None, start: float | None = None, end: float | None = None) -> Utterance:
    audio = Segment(path, start, end) if path is not None else None
    return Utterance(utt_id, "test", "spk", "s1", audio=audio)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_audio(root / "tone220.wav", tone([220], 1.5, RATE, noise=0.005), RATE)
    write_audio(root / "tone140_44k.wav", tone([140], 1.5, 44100, noise=0.005), 44100)
    write_audio(root / "two_part.wav", tone([180, 300], 1.0, RATE, noise=0.005), RATE)
    write_video(root / "clip.mp4", root / "two_part.wav", 2.0, "aac")
    write_audio(root / "noise.wav", np.clip(np.random.default_rng(3).normal(0, 0.3, RATE), -1, 1), RATE)
    write_audio(root / "silence.wav", np.zeros(RATE, np.float32), RATE)
    write_audio(root / "hiss.wav", np.full(RATE, 1e-5, np.float32), RATE)  # -100 dBFS
    write_audio(root / "short.wav", tone([200], 0.1, RATE), RATE)
    (root / "zero.wav").write_bytes(b"")
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    return root


@pytest.fixture(scope="module")
def frames(corpus: Path) -> CompareExtractor:
    extractor = CompareExtractor(FRAME_CONFIG, corpus)
    extractor.setup()
    return extractor


def f0(features: np.ndarray, names: list[str]) -> np.ndarray:
    column = features[:, names.index("F0final_sma")]
    return column[column > 0]


def test_dimension_and_feature_names(frames: CompareExtractor) -> None:
    lld, deltas = (opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=level).feature_names
                   for level in (opensmile.FeatureLevel.LowLevelDescriptors,
                                 opensmile.FeatureLevel.LowLevelDescriptors_Deltas))
    assert frames.dim == 130 and len(lld) == len(deltas) == 65
    assert frames.feature_names == lld + deltas
    assert frames.feature_names[:2] == ["F0final_sma", "voicingFinalUnclipped_sma"]
    assert frames.feature_names[65:67] == ["F0final_sma_de", "voicingFinalUnclipped_sma_de"]
    attrs = frames.attributes()
    assert attrs["frame_hop_s"] == pytest.approx(0.01)
    assert attrs["library_versions"]["opensmile"] == opensmile.__version__
    assert extractor_class("compare") is CompareExtractor
    assert extractor_class("compare_utterance") is CompareUtteranceExtractor


@pytest.mark.parametrize(("path", "hz"), [("tone220.wav", 220.0), ("tone140_44k.wav", 140.0)])
def test_tone_frequency_shows_in_f0(frames: CompareExtractor, path: str, hz: float) -> None:
    result = frames.process([utterance("u", path)])[0]
    assert result.present and result.features.dtype == np.float32
    voiced = f0(result.features, frames.feature_names)
    assert len(voiced) > 0.8 * len(result.features)
    assert np.median(voiced) == pytest.approx(hz, rel=0.02)


@pytest.mark.parametrize(("path", "start", "end", "hz"),
                         [("two_part.wav", 0.1, 0.9, 180.0), ("two_part.wav", 1.1, 1.9, 300.0),
                          ("clip.mp4", 1.1, 1.9, 300.0)])
def test_segment_frequency_and_length(frames: CompareExtractor, path: str, start: float, end: float,
                                      hz: float) -> None:
    result = frames.process([utterance("u", path, start, end)])[0]
    assert len(result.features) == pytest.approx((end - start) / 0.01 - 4, abs=2)
    assert np.median(f0(result.features, frames.feature_names)) == pytest.approx(hz, rel=0.02)


@pytest.mark.parametrize("seconds", [0.137, 0.5, 1.0, 1.234])
def test_one_pass_equals_the_two_levels_joined_on_frame_index(frames: CompareExtractor, tmp_path: Path,
                                                             seconds: float) -> None:
    """openSMILE's `lld` and `lld_de` levels repeat end timestamps; frame k is row k of each level."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * RATE)) / RATE
    signal = (0.3 * np.sin(2 * np.pi * (150 * t + 80 * t**2)) + 0.05 * rng.standard_normal(len(t)))
    write_audio(tmp_path / "chirp.wav", signal.astype(np.float32), RATE)
    levels = [opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=level)
              .process_file(tmp_path / "chirp.wav")
              for level in (opensmile.FeatureLevel.LowLevelDescriptors,
                            opensmile.FeatureLevel.LowLevelDescriptors_Deltas)]
    lld, deltas = (level.to_numpy(np.float32) for level in levels)
    starts = levels[0].index.get_level_values("start")
    assert starts.has_duplicates  # why the timestamps cannot be the join key
    assert len(deltas) > len(lld)
    joined = np.concatenate([lld, deltas[: len(lld)]], axis=1)
    ours = CompareExtractor({**FRAME_CONFIG, "min_frames": 0}, tmp_path).process([utterance("u", "chirp.wav")])[0]
    np.testing.assert_array_equal(ours.features, joined)


def test_downsampling_by_ten(corpus: Path, frames: CompareExtractor) -> None:
    full = frames.process([utterance("u", "tone220.wav")])[0].features
    coarse = CompareExtractor({**FRAME_CONFIG, "downsample": 10}, corpus)
    result = coarse.process([utterance("u", "tone220.wav")])[0]
    assert result.features.shape == (math.ceil(len(full) / 10), 130)
    np.testing.assert_allclose(result.features, resample_poly(full.astype(np.float64), 1, 10), rtol=1e-5,
                               atol=1e-3)
    assert coarse.attributes()["frame_hop_s"] == pytest.approx(0.1)


def test_raw_values_overflow_float16_and_are_kept_float32(frames: CompareExtractor) -> None:
    result = frames.process([utterance("u", "noise.wav")])[0]
    assert np.isfinite(result.features).all()
    assert np.abs(result.features).max() > np.finfo(np.float16).max
    assert result.features.dtype == np.float32


@pytest.mark.parametrize(("path", "reason"),
                         [("corrupt.wav", "unreadable"), ("zero.wav", "empty_file"), ("silence.wav", "silent"),
                          ("hiss.wav", "silent"), ("short.wav", "too_short"), ("absent.wav", "missing_file"),
                          (None, "no_audio")])
def test_bad_utterances_are_missing_with_a_reason(frames: CompareExtractor, path: str | None, reason: str) -> None:
    result = frames.process([utterance("u", path)])[0]
    assert not result.present and result.failure == reason
    assert result.features.shape == (0, 130)


def test_min_frames_is_the_threshold(corpus: Path) -> None:
    short = utterance("u", "tone220.wav", 0.0, 0.2)  # 16 frames
    assert CompareExtractor({**FRAME_CONFIG, "min_frames": 15}, corpus).process([short])[0].present
    assert not CompareExtractor({**FRAME_CONFIG, "min_frames": 16}, corpus).process([short])[0].present


def test_store_bytes_do_not_depend_on_the_number_of_workers(corpus: Path, tmp_path: Path) -> None:
    utts = [utterance("a_tone", "tone220.wav"), utterance("b_resampled", "tone140_44k.wav", 0.2, 1.2),
            utterance("c_video", "clip.mp4", 0.5, 1.5), utterance("d_corrupt", "corrupt.wav"),
            utterance("e_zero", "zero.wav"), utterance("f_short", "short.wav"), utterance("g_seg", "two_part.wav")]
    config = {**FRAME_CONFIG, "downsample": 10, "batch_size": 1}
    paths = []
    for workers, start_method in ((1, "spawn"), (2, "spawn"), (2, "fork")):
        out = tmp_path / f"w{workers}{start_method}" / "compare.h5"
        summary = extract_to_store(CompareExtractor(config, corpus), utts, out, shard_size=3, progress=False,
                                   executor_options={"workers": workers, "start_method": start_method})
        assert summary.missing == 3
        paths.append(out)
    assert paths[0].read_bytes() == paths[1].read_bytes() == paths[2].read_bytes()
    with FeatureStore(paths[0]) as store:
        assert store.present.tolist() == [True, True, True, False, False, False, True]
        assert store.failure[3:6] == ["unreadable", "empty_file", "too_short"]
        assert store.dim == 130 and store["a_tone"].shape == (15, 130)
        assert store.attr_json("feature_names")[0] == "F0final_sma"
        assert store.attrs["frame_hop_s"] == pytest.approx(0.1)
        assert store.attr_json("config")["downsample"] == 10


def test_unknown_start_method_is_a_configuration_error(corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(ExtractorConfigError, match="start_method"):
        extract_to_store(CompareExtractor(FRAME_CONFIG, corpus), [utterance("a", "tone220.wav")],
                         tmp_path / "x.h5", progress=False, executor_options={"workers": 2, "start_method": "threads"})


@pytest.mark.parametrize(("feature_set", "dim"), [("eGeMAPSv02", 88), ("ComParE_2016", 6373)])
def test_utterance_functionals(corpus: Path, feature_set: str, dim: int) -> None:
    extractor = CompareUtteranceExtractor({**UTTERANCE_CONFIG, "feature_set": feature_set}, corpus)
    good, short, corrupt = extractor.process([utterance("a", "tone220.wav"), utterance("b", "short.wav"),
                                              utterance("c", "corrupt.wav")])
    assert extractor.dim == dim and good.present and good.features.shape == (1, dim)
    assert np.isfinite(good.features).all()
    assert (short.failure, corrupt.failure) == ("too_short", "unreadable")
    if feature_set == "eGeMAPSv02":
        mean_pitch = good.features[0, extractor.feature_names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]
        assert 27.5 * 2 ** (mean_pitch / 12) == pytest.approx(220, rel=0.02)


@pytest.mark.parametrize(("change", "message"),
                         [({"downsample": 0}, "downsample"), ({"sample_rate": 16000.5}, "integer"),
                          ({"min_frames": -1}, "min_frames"), ({"workers": 2}, "unknown config keys"),
                          ({"silence_dbfs": 3}, "dBFS")])
def test_configuration_errors_fail_before_work(corpus: Path, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ExtractorConfigError, match=message):
        CompareExtractor({**FRAME_CONFIG, **change}, corpus)


def test_incomplete_or_wrong_utterance_config(corpus: Path) -> None:
    with pytest.raises(ExtractorConfigError, match="lacks"):
        CompareUtteranceExtractor({k: v for k, v in UTTERANCE_CONFIG.items() if k != "feature_set"}, corpus)
    with pytest.raises(ExtractorConfigError, match="feature_set"):
        CompareUtteranceExtractor({**UTTERANCE_CONFIG, "feature_set": "IS10"}, corpus)
