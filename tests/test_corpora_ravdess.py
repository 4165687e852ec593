"""RAVDESS adapter on generated extracted zips: seven-field names, one performance released as up to 3 files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.corpora import adapter
from pipeline.corpora.common import CorpusLayoutError, CorpusOptionError
from pipeline.corpora.ravdess import prepare
from pipeline.manifest import ManifestError, validate
from tests.corpus_fixtures import put_wav, ravdess_tree


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ravdess_tree(tmp_path_factory.mktemp("ravdess"))


def by_id(corpus):
    return {u.utt_id: u for u in corpus.utterances}


def test_registry_finds_the_adapter() -> None:
    assert adapter("ravdess").prepare is prepare


def test_performances_join_their_audio_and_video_files(root: Path) -> None:
    corpus = prepare(root, {})
    assert corpus.classes == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    utts = by_id(corpus)
    assert sorted(utts) == ["01-01-01-01-01-01", "01-03-01-02-02-02", "01-05-02-02-01-01", "01-08-02-01-01-02"]
    utt = utts["01-01-01-01-01-01"]
    assert utt.audio.path == "Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.wav"
    assert utt.video.path == "Video_Speech_Actor_01/Actor_01/01-01-01-01-01-01-01.mp4"
    assert (utt.speaker, utt.session, utt.label, utt.text) == ("Actor_01", "Actor_01", "neutral",
                                                               "Kids are talking by the door")
    assert utt.extra == {"code": "01", "vocal_channel": "speech", "intensity": "normal", "repetition": 1, "sex": "male"}
    other = utts["01-03-01-02-02-02"]
    assert (other.label, other.text, other.extra["sex"]) == ("happy", "Dogs are sitting by the door", "female")
    assert utts["01-05-02-02-01-01"].video is None  # no full-AV mp4 for that performance
    assert utts["01-08-02-01-01-02"].audio is None  # video-only file, no wav
    assert (corpus.stats["missing_audio"], corpus.stats["missing_video"]) == (1, 2)
    validate(corpus.utterances, corpus.classes, root)


def test_song_channel_and_video_only_source(root: Path) -> None:
    corpus = prepare(root, {"vocal_channels": ["song"]})
    assert [(u.utt_id, u.label) for u in corpus.utterances] == [("02-02-01-01-01-01", "calm")]
    utts = by_id(prepare(root, {"video_source": "video_only"}))
    assert utts["01-01-01-01-01-01"].video.path == "Video_Speech_Actor_01/Actor_01/02-01-01-01-01-01-01.mp4"
    corpus = prepare(root, {"classes": ["neutral", "happy"], "outside_classes": "drop"})
    assert sorted(by_id(corpus)) == ["01-01-01-01-01-01", "01-03-01-02-02-02"]


def test_bad_names_error_or_skip(tmp_path: Path, root: Path) -> None:
    copy = tmp_path / "RAVDESS"
    shutil.copytree(root, copy)
    put_wav(copy / "Actor_25" / "03-01-01-01-01-01-25.wav")
    with pytest.raises(ManifestError, match="not a RAVDESS file name") as info:
        prepare(copy, {})
    assert info.value.source.endswith("Actor_25/03-01-01-01-01-01-25.wav")
    assert prepare(copy, {"bad_names": "skip"}).stats["bad_names"] == ["Actor_25/03-01-01-01-01-01-25.wav"]


def test_missing_root_empty_root_and_bad_option(tmp_path: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        prepare(tmp_path / "nowhere", {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="no RAVDESS"):
        prepare(tmp_path / "empty", {})
    with pytest.raises(CorpusOptionError, match="vocal_channels"):
        prepare(tmp_path, {"vocal_channels": ["speach"]})
