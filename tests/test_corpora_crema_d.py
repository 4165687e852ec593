"""CREMA-D adapter on a generated checkout: four-field names, LFS pointer files, blank media, perception votes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.corpora import adapter
from pipeline.corpora.common import CorpusLayoutError, CorpusOptionError
from pipeline.corpora.crema_d import prepare
from pipeline.manifest import ManifestError, validate
from tests.corpus_fixtures import CREMA_CLIPS, crema_tree


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return crema_tree(tmp_path_factory.mktemp("crema"))


def by_id(corpus):
    return {u.utt_id: u for u in corpus.utterances}


def test_registry_finds_the_adapter() -> None:
    assert adapter("crema_d").prepare is prepare


def test_clips_actors_sentences_and_intended_labels(root: Path) -> None:
    corpus = prepare(root, {})
    assert corpus.classes == ["ang", "dis", "fea", "hap", "neu", "sad"]
    utts = by_id(corpus)
    assert sorted(utts) == sorted(CREMA_CLIPS)
    utt = utts["1001_IEO_HAP_HI"]
    assert (utt.speaker, utt.session, utt.label, utt.text) == ("1001", "1001", "hap", "It's eleven o'clock")
    assert utt.extra == {"code": "HAP", "sentence": "IEO", "level": "HI", "intended": "HAP"}
    assert utt.audio.path == "AudioWAV/1001_IEO_HAP_HI.wav" and utt.video.path == "VideoFlash/1001_IEO_HAP_HI.flv"
    assert utts["1091_WSI_SAD_LO"].text == "We'll stop in a couple of minutes"
    assert corpus.stats["speakers"] == 3
    assert corpus.stats["labels"] == {"ang": 1, "dis": 1, "fea": 1, "hap": 1, "neu": 1, "sad": 1}
    validate(corpus.utterances, corpus.classes, root)


def test_blank_flv_is_a_missing_video(root: Path) -> None:
    corpus = prepare(root, {})
    utt = by_id(corpus)["1002_ITS_FEA_XX"]
    assert utt.video is None and utt.audio is not None
    assert corpus.stats["empty_media"] == 1 and corpus.stats["missing_video"] == 1


def test_perception_votes_with_a_tie_left_unlabelled(root: Path) -> None:
    corpus = prepare(root, {"label_source": "voice"})
    utts = by_id(corpus)
    assert utts["1002_ITS_FEA_XX"].label == "sad"  # heard as sad, acted as fear
    assert utts["1002_TSI_DIS_XX"].label is None  # A:N tie
    assert corpus.stats["vote_ties"] == 1
    assert by_id(prepare(root, {"label_source": "face"}))["1001_IEO_HAP_HI"].label == "neu"
    corpus = prepare(root, {"label_source": "voice", "outside_classes": "drop"})
    assert "1002_TSI_DIS_XX" not in by_id(corpus)


def test_four_class_subset(root: Path) -> None:
    corpus = prepare(root, {"classes": ["ang", "hap", "neu", "sad"],
                            "label_map": {"ANG": "ang", "HAP": "hap", "NEU": "neu", "SAD": "sad"}})
    assert corpus.stats["labelled"] == 4 and corpus.stats["unlabelled"] == 2


def test_lfs_pointer_checkout_is_a_clear_error_or_missing_media(tmp_path: Path) -> None:
    root = crema_tree(tmp_path, lfs=True)
    with pytest.raises(CorpusLayoutError, match=r"12 media files .* Git LFS pointer files.*git lfs pull"):
        prepare(root, {})
    corpus = prepare(root, {"lfs_pointers": "missing"})
    assert corpus.stats["lfs_pointers"] == 12
    assert all(u.audio is None and u.video is None for u in corpus.utterances)
    assert len(corpus.utterances) == len(CREMA_CLIPS)  # text and labels remain


def test_misnamed_clip_fails_with_its_path_or_is_skipped(tmp_path: Path) -> None:
    root = crema_tree(tmp_path, bad_name=True)
    with pytest.raises(ManifestError, match=r"1040_ITH_SAD_X.wav.*level 'X'") as info:
        prepare(root, {})
    assert info.value.source.endswith("AudioWAV/1040_ITH_SAD_X.wav")
    corpus = prepare(root, {"bad_names": "skip"})
    assert corpus.stats["bad_names"] == ["AudioWAV/1040_ITH_SAD_X.wav"]
    assert "1040_ITH_SAD_X" not in by_id(corpus)


@pytest.mark.parametrize("name, message", [
    ("1001_DFA_ANG.wav", "3 '_'-separated fields"),
    ("1001_XYZ_ANG_XX.wav", "sentence 'XYZ'"),
    ("1001_DFA_CAL_XX.wav", "emotion 'CAL'"),
    ("A001_DFA_ANG_XX.wav", "actor 'A001'"),
])
def test_each_name_field_is_checked(tmp_path: Path, root: Path, name: str, message: str) -> None:
    import shutil

    copy = tmp_path / "CREMA-D"
    shutil.copytree(root, copy)
    shutil.copyfile(root / "AudioWAV" / "1001_DFA_ANG_XX.wav", copy / "AudioWAV" / name)
    with pytest.raises(ManifestError, match=message):
        prepare(copy, {})


def test_missing_root_and_bad_options(tmp_path: Path, root: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        prepare(tmp_path / "nowhere", {})
    with pytest.raises(CorpusLayoutError, match="AudioWAV"):
        prepare(root.parent, {})
    with pytest.raises(CorpusOptionError, match="label_source"):
        prepare(root, {"label_source": "audio"})
    with pytest.raises(CorpusOptionError, match="not a label code"):
        prepare(root, {"label_map": {"A": "ang"}})
