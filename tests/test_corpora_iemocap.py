"""IEMOCAP adapter on a generated IEMOCAP_full_release tree with the release's traps."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from pipeline.corpora import adapter
from pipeline.corpora.common import CorpusLayoutError, CorpusOptionError
from pipeline.corpora.iemocap import prepare
from pipeline.manifest import ManifestError, read_manifest, validate, write_manifest
from tests.corpus_fixtures import IEMOCAP_DIALOGUES, iemocap_tree

TWO_SESSIONS = {"sessions": [1, 2]}  # the fixture ships Session1 and Session2


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return iemocap_tree(tmp_path_factory.mktemp("iemocap"))


def by_id(corpus):
    return {u.utt_id: u for u in corpus.utterances}


def test_registry_finds_the_adapter() -> None:
    assert adapter("iemocap").prepare is prepare


def test_four_class_default_keeps_every_turn_with_outside_codes_unlabelled(root: Path) -> None:
    corpus = prepare(root, TWO_SESSIONS)
    assert corpus.classes == ["ang", "hap", "neu", "sad"]
    utts = by_id(corpus)
    all_ids = {row[0] for rows in IEMOCAP_DIALOGUES.values() for row in rows}
    assert set(utts) == all_ids  # the XX id of the transcripts is no utterance
    assert utts["Ses01F_impro05a_F001"].label == "hap"  # excited merged into happy
    assert utts["Ses01F_impro05a_F000"].label == "neu"
    for outside in ("Ses01F_impro05a_M000", "Ses01F_impro05a_M001", "Ses02M_impro08b_M000"):  # xxx fru sur
        assert utts[outside].label is None
    assert corpus.stats["labels"] == {"ang": 1, "hap": 2, "neu": 2, "sad": 1}
    assert corpus.stats["unlabelled"] == 3
    validate(corpus.utterances, corpus.classes, root)


def test_speakers_sessions_and_turn_order_by_start_time(root: Path) -> None:
    utts = by_id(prepare(root, TWO_SESSIONS))
    # the speaker is the session + the letter of the last field, not the mocap letter after SesNN
    assert utts["Ses01M_script01_1_F000"].speaker == "Ses01_F"
    assert utts["Ses01F_impro05a_M000"].speaker == "Ses01_M"
    assert utts["Ses02M_impro08b_F000"].speaker == "Ses02_F"
    assert {u.speaker for u in utts.values()} == {"Ses01_F", "Ses01_M", "Ses02_F", "Ses02_M"}
    assert utts["Ses02M_impro08b_F000"].session == "Ses02"
    assert utts["Ses01F_impro05a_M000"].dialogue_id == "Ses01F_impro05a"
    # EmoEvaluation lists F000, F001, M000, M001; by start time the order is F000, M000, F001, M001
    order = sorted((u for u in utts.values() if u.dialogue_id == "Ses01F_impro05a"), key=lambda u: u.turn)
    assert [u.utt_id for u in order] == ["Ses01F_impro05a_F000", "Ses01F_impro05a_M000",
                                         "Ses01F_impro05a_F001", "Ses01F_impro05a_M001"]
    assert [u.turn for u in order] == [0, 1, 2, 3]


def test_media_times_text_and_vad(root: Path) -> None:
    corpus = prepare(root, TWO_SESSIONS)
    utts = by_id(corpus)
    utt = utts["Ses01F_impro05a_M000"]
    assert utt.audio.path == "Session1/sentences/wav/Ses01F_impro05a/Ses01F_impro05a_M000.wav"
    assert utt.audio.start is None and utt.audio.end is None
    assert sf.info(root / utt.audio.path).samplerate == 16000
    assert utt.video.path == "Session1/dialog/avi/DivX/Ses01F_impro05a.avi"
    assert (utt.video.start, utt.video.end) == (0.16, 0.25)
    assert utt.text == "Do you have your forms?"
    assert utt.vad == {"valence": 2.0, "arousal": 3.0, "dominance": 3.0}
    # Session2's dialogue ships no avi and one turn has no transcript line
    assert utts["Ses02M_impro08b_F000"].video is None
    assert utts["Ses02M_impro08b_F000"].text is None
    assert corpus.stats["missing_video"] == 2 and corpus.stats["missing_text"] == 1
    assert corpus.stats["transcript_ids_without_utterance"] == 3  # one XX id per dialogue
    assert corpus.stats["transcript_lines_skipped"] == 3


def test_face_side_by_marker_wearer_with_speaker_and_dialogue_overrides(root: Path) -> None:
    utts = by_id(prepare(root, TWO_SESSIONS))
    # Ses01F_*: F wore the markers -> left; Ses01M_*: M wore them -> left
    assert utts["Ses01F_impro05a_F000"].video.face_region == "left"
    assert utts["Ses01F_impro05a_M000"].video.face_region == "right"
    assert utts["Ses01M_script01_1_M000"].video.face_region == "left"
    assert utts["Ses01M_script01_1_F000"].video.face_region == "right"
    utts = by_id(prepare(root, {**TWO_SESSIONS, "face_region_by_speaker": {"Ses01_F": "right"},
                                "face_region_by_dialogue": {"Ses01M_script01_1": {"F": "left"}}}))
    assert utts["Ses01F_impro05a_F000"].video.face_region == "right"
    assert utts["Ses01M_script01_1_F000"].video.face_region == "left"
    assert utts["Ses01M_script01_1_M000"].video.face_region == "left"


def test_six_class_set_and_dropping_the_unlabelled(root: Path) -> None:
    corpus = prepare(root, {**TWO_SESSIONS, "label_set": "6class", "outside_classes": "drop"})
    assert corpus.classes == ["hap", "sad", "neu", "ang", "exc", "fru"]
    utts = by_id(corpus)
    assert utts["Ses01F_impro05a_F001"].label == "exc"
    assert utts["Ses01F_impro05a_M001"].label == "fru"
    assert "Ses01F_impro05a_M000" not in utts and "Ses02M_impro08b_M000" not in utts  # xxx, sur dropped
    assert corpus.stats["dropped_unlabelled"] == 2
    # turns are renumbered over the kept turns: F000, F001, M001
    order = sorted((u for u in utts.values() if u.dialogue_id == "Ses01F_impro05a"), key=lambda u: u.turn)
    assert [u.turn for u in order] == [0, 1, 2]
    validate(corpus.utterances, corpus.classes, root)


def test_dialogue_audio_sessions_option_and_manifest_round_trip(root: Path, tmp_path: Path) -> None:
    corpus = prepare(root, {**TWO_SESSIONS, "audio": "dialog", "sessions": [2], "video": False})
    assert {u.session for u in corpus.utterances} == {"Ses02"}
    utt = by_id(corpus)["Ses02M_impro08b_F000"]
    assert (utt.audio.path, utt.audio.start, utt.audio.end) == ("Session2/dialog/wav/Ses02M_impro08b.wav", 0.25, 0.4)
    assert utt.video is None
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, corpus.utterances, corpus.classes, root)
    assert read_manifest(path, corpus.classes, root) == sorted(corpus.utterances, key=lambda u: u.utt_id)


def test_custom_class_list(root: Path) -> None:
    corpus = prepare(root, {**TWO_SESSIONS, "label_set": "6class", "classes": ["pos", "neg"],
                            "label_map": {"hap": "pos", "exc": "pos", "sad": "neg", "ang": "neg", "fru": "neg"}})
    assert corpus.stats["labels"] == {"pos": 2, "neg": 3}


@pytest.mark.parametrize("options, message", [
    ({"label_set": "5class"}, "label_set"),
    ({"label_set": "6class", "classes": ["ang", "happy"]}, "match no label code"),
    ({"classes": ["ang", "happy"]}, "match no label code"),
    ({"classes": ["ang", "hap"], "label_map": {"exc": "happy"}}, "not in classes"),
    ({"label_map": {"excited": "hap"}}, "not a label code"),
    ({"face_region": {"mocap": "top", "partner": "right"}}, "top"),
    ({"sessions": [6]}, "sessions"),
    ({"audio": "mp3"}, "audio"),
    ({"face_regions": {}}, "unknown option"),
])
def test_bad_options_fail_before_reading(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(CorpusOptionError, match=message):
        prepare(tmp_path / "nowhere", options)


def test_missing_root_and_wrong_level(tmp_path: Path, root: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        prepare(tmp_path / "nowhere", {})
    with pytest.raises(CorpusLayoutError, match="IEMOCAP_full_release"):
        prepare(root.parent, TWO_SESSIONS)


def _broken_copy(root: Path, tmp_path: Path, dialogue: str, old: str, new: str) -> Path:
    import shutil

    copy = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(root, copy)
    path = copy / f"Session{int(dialogue[3:5])}" / "dialog" / "EmoEvaluation" / f"{dialogue}.txt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return copy


@pytest.mark.parametrize("old, new, field, line", [
    ("[0.2600 - 0.3800]", "[0.2600 0.3800]", "time", 10),
    ("[0.2600 - 0.3800]", "[0.3800 - 0.2600]", "time", 10),
    ("\texc\t", "\texcited\t", "label", 10),
    ("[4.0000, 3.5000, 3.0000]", "[4.0000, 3.5000]", "vad", 10),
    ("Ses01F_impro05a_F001\t", "Ses01F_impro01_F001\t", "utt_id", 10),
    ("\texc\t[4.0000", " exc [4.0000", None, 10),
])
def test_malformed_block_head_names_file_line_and_field(root: Path, tmp_path: Path, old: str, new: str,
                                                        field: str | None, line: int) -> None:
    broken = _broken_copy(root, tmp_path, "Ses01F_impro05a", old, new)
    with pytest.raises(ManifestError) as info:
        prepare(broken, TWO_SESSIONS)
    err = info.value
    assert err.source.endswith("Session1/dialog/EmoEvaluation/Ses01F_impro05a.txt")
    assert (err.line, err.field) == (line, field)
    assert "Ses01F_impro05a.txt:line 10" in str(err)


def test_duplicate_block_is_an_error(root: Path, tmp_path: Path) -> None:
    broken = _broken_copy(root, tmp_path, "Ses01F_impro05a", "Ses01F_impro05a_F001\t", "Ses01F_impro05a_F000\t")
    with pytest.raises(ManifestError, match="duplicate utterance"):
        prepare(broken, TWO_SESSIONS)
