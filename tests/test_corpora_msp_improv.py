"""MSP-IMPROV adapter on generated trees in both packagings, with Evaluation.txt's irregular consensus lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.corpora import adapter
from pipeline.corpora.common import CorpusLayoutError, CorpusOptionError
from pipeline.corpora.msp_improv import prepare
from pipeline.manifest import ManifestError, validate
from tests.corpus_fixtures import MSP_RATINGS, msp_tree, put_wav


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return msp_tree(tmp_path_factory.mktemp("msp"))


def by_id(corpus):
    return {u.utt_id: u for u in corpus.utterances}


def test_registry_finds_the_adapter() -> None:
    assert adapter("msp_improv").prepare is prepare


def test_consensus_lines_become_utterances(root: Path) -> None:
    corpus = prepare(root, {})
    assert corpus.classes == ["ang", "hap", "neu", "sad"]
    utts = by_id(corpus)
    assert sorted(utts) == sorted(r[0] for r in MSP_RATINGS)  # the unrated media file is no utterance
    assert corpus.stats["unannotated_media"] == 1
    assert [utts[r[0]].label for r in MSP_RATINGS] == ["ang", "neu", "hap", None, "sad", None]  # O, X unlabelled
    utt = utts["MSP-IMPROV-S05S-F02-S-FM01"]
    assert (utt.speaker, utt.session) == ("F02", "session2")
    assert utt.extra["condition"] == "S" and utt.extra["scenario"] == "S05S" and utt.extra["raters"] == 3
    assert {u.speaker for u in utts.values()} == {"F01", "M01", "F02", "M02"}
    assert corpus.stats["conditions"] == {"P": 1, "R": 1, "S": 2, "T": 2}
    validate(corpus.utterances, corpus.classes, root)


def test_vad_naturalness_nan_and_the_older_line_without_n(root: Path) -> None:
    utts = by_id(prepare(root, {}))
    first = utts["MSP-IMPROV-S01A-F01-S-FM01"]
    assert first.vad == {"arousal": 4.2, "valence": 1.8, "dominance": 3.6}
    assert first.extra["naturalness"] == 3.0
    assert "naturalness" not in utts["MSP-IMPROV-S01A-M01-R-MF01"].extra
    assert utts["MSP-IMPROV-S05S-M02-T-MF01"].vad == {"arousal": 2.0, "dominance": 2.5}  # V was NaN


def test_media_and_transcripts(root: Path) -> None:
    corpus = prepare(root, {})
    utts = by_id(corpus)
    utt = utts["MSP-IMPROV-S01A-F01-S-FM01"]
    assert utt.audio.path == "session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav"
    assert utt.video.path == "session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.avi"
    assert utt.text == "I can't believe you did it."
    assert utts["MSP-IMPROV-S02H-F01-P-FM03"].video is None
    assert utts["MSP-IMPROV-S05S-F02-S-FM01"].text is None
    assert (corpus.stats["missing_video"], corpus.stats["missing_text"]) == (1, 1)


def test_split_packaging_and_misspelled_evaluation_file(tmp_path: Path) -> None:
    root = msp_tree(tmp_path, packaging="split", evaluation_name="Evalution.txt")
    corpus = prepare(root, {})
    utt = by_id(corpus)["MSP-IMPROV-S01A-F01-S-FM01"]
    assert utt.audio.path == "Audio/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.wav"
    assert utt.video.path == "Video/session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.avi"
    assert corpus.stats["evaluation_file"] == "Evalution.txt"
    assert len(corpus.utterances) == len(MSP_RATINGS)


def test_both_packagings_at_once_is_an_error(tmp_path: Path) -> None:
    root = msp_tree(tmp_path)
    put_wav(root / "Audio" / "session1" / "S01A" / "S" / "MSP-IMPROV-S01A-F01-S-FM01.wav")
    with pytest.raises(CorpusLayoutError, match="two .wav files"):
        prepare(root, {})


def test_condition_session_and_label_options(root: Path) -> None:
    corpus = prepare(root, {"conditions": ["S", "T"], "sessions": [2]})
    assert sorted(by_id(corpus)) == ["MSP-IMPROV-S05S-F02-S-FM01", "MSP-IMPROV-S05S-M02-T-MF01"]
    corpus = prepare(root, {"outside_classes": "drop"})
    assert corpus.stats["unlabelled"] == 0 and corpus.stats["dropped_unlabelled"] == 2
    corpus = prepare(root, {"classes": ["ang", "hap", "neu", "sad", "oth"],
                            "label_map": {"A": "ang", "H": "hap", "N": "neu", "S": "sad", "O": "oth"}})
    assert by_id(corpus)["MSP-IMPROV-S02H-M01-T-MF02"].label == "oth"
    with pytest.raises(CorpusOptionError, match="conditions"):
        prepare(root, {"conditions": ["X"]})


def _broken(root: Path, tmp_path: Path, old: str, new: str) -> Path:
    import shutil

    copy = tmp_path / "MSP-IMPROV"
    shutil.copytree(root, copy)
    path = copy / "Evaluation.txt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize("old, new, line, field", [
    ("UTD-IMPROV-S01A-M01-R-MF01.avi; N;", "UTD-IMPROV-S01A-M01-R-MF01.avi; Q;", 6, "label"),
    ("UTD-IMPROV-S01A-M01-R-MF01.avi", "UTD-IMPROV-S01A-M1-R-MF01.avi", 6, "utt_id"),
    ("A:2.400000; V:3.000000", "A:2.400000; V:three", 6, "V"),
    ("V:3.000000; D:2.800000;", "V:3.000000;", 6, "D"),
    ("UTD-IMPROV-S01A-M01-R-MF01.avi", "UTD-IMPROV-S01A-F01-S-FM01.avi", 6, "utt_id"),
])
def test_malformed_consensus_lines_name_file_line_and_field(root: Path, tmp_path: Path, old: str, new: str,
                                                            line: int, field: str) -> None:
    with pytest.raises(ManifestError) as info:
        prepare(_broken(root, tmp_path, old, new), {})
    assert info.value.source.endswith("Evaluation.txt")
    assert (info.value.line, info.value.field) == (line, field)


def test_missing_root_and_labels_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        prepare(tmp_path / "nowhere", {})
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="Evaluation.txt or Evalution.txt"):
        prepare(tmp_path / "empty", {})
