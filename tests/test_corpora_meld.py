"""MELD adapter on a generated MELD.Raw folder: CRLF CSVs with curly quotes, quoted commas and the known faults."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import imageio_ffmpeg
import pytest

from pipeline.corpora import adapter
from pipeline.corpora.common import CorpusLayoutError, CorpusOptionError
from pipeline.corpora.meld import prepare
from pipeline.manifest import ManifestError, validate
from tests.corpus_fixtures import MELD_ROWS, meld_tree


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return meld_tree(tmp_path_factory.mktemp("meld"))


def by_id(corpus):
    return {u.utt_id: u for u in corpus.utterances}


def test_registry_finds_the_adapter() -> None:
    assert adapter("meld").prepare is prepare


def test_fixture_csv_has_the_release_traps(root: Path) -> None:
    raw = (root / "train_sent_emo.csv").read_bytes()
    assert b"\r\n" in raw and "\u2019".encode() in raw and b'"00:16:16,059"' in raw and b'"0:16:21,940"' in raw


def test_every_row_becomes_an_utterance_with_split_speaker_and_text(root: Path) -> None:
    corpus = prepare(root, {})
    assert corpus.classes == ["neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger"]
    utts = by_id(corpus)
    assert len(utts) == sum(len(rows) for rows in MELD_ROWS.values())
    assert corpus.stats["splits"] == {"dev": 3, "test": 2, "train": 5}
    utt = utts["train_dia2_utt0"]
    assert utt.text == "\u201cOh my God\u2026\u201d, she said, \"no way\""  # curly quotes, commas, doubled quotes
    assert (utt.speaker, utt.label, utt.split, utt.session) == ("Monica", "surprise", "train", "S01E03")
    assert utt.extra["sentiment"] == "positive"
    assert utts["train_dia0_utt1"].speaker == "The Interviewer"
    assert utts["dev_dia110_utt7"].speaker == "Mrs. Geller"
    assert corpus.stats["encodings"] == {"train": "utf-8", "dev": "utf-8", "test": "utf-8"}
    assert corpus.stats["labels"] == {"neutral": 3, "surprise": 1, "fear": 1, "sadness": 2, "joy": 1,
                                      "disgust": 1, "anger": 1}
    validate(corpus.utterances, corpus.classes, root)


def test_both_time_styles(root: Path) -> None:
    utts = by_id(prepare(root, {}))
    assert utts["train_dia0_utt0"].extra["episode_start"] == pytest.approx(16 * 60 + 16.059)
    assert utts["train_dia0_utt1"].extra["episode_start"] == pytest.approx(16 * 60 + 21.940)
    assert utts["test_dia0_utt0"].extra["episode_end"] == pytest.approx(11.5)


def test_id_gaps_give_contiguous_turns_in_utterance_order(root: Path) -> None:
    utts = by_id(prepare(root, {}))
    assert "train_dia1_utt0" not in utts
    assert (utts["train_dia2_utt0"].turn, utts["train_dia2_utt2"].turn) == (0, 1)
    assert utts["train_dia2_utt2"].dialogue_id == "train_dia2"
    assert [utts[f"train_dia0_utt{i}"].turn for i in (0, 1)] == [0, 1]


def test_missing_unannotated_and_corrupt_clips(root: Path) -> None:
    corpus = prepare(root, {})
    utts = by_id(corpus)
    missing = utts["dev_dia110_utt7"]
    assert missing.audio is None and missing.video is None and missing.text == "Ew."
    assert corpus.stats["missing_clips"] == ["dev_splits_complete/dia110_utt7.mp4"]
    assert corpus.stats["unannotated_clips"] == [
        "dev_splits_complete/dia49_utt4.mp4", "dev_splits_complete/dia66_utt9.mp4",
        "output_repeated_splits_test/dia108_utt2.mp4", "output_repeated_splits_test/final_videos_testdia101_utt0.mp4"]
    corrupt = utts["train_dia125_utt3"]  # kept: the extractor marks it missing
    assert corrupt.video.path == corrupt.audio.path == "train_splits/dia125_utt3.mp4"
    good = utts["test_dia0_utt0"]
    assert good.audio.path == "output_repeated_splits_test/dia0_utt0.mp4"
    assert good.audio.start is None and good.video.face_region == "full"
    assert corpus.stats["with_audio"] == 9


def test_the_clip_carries_an_audio_track(root: Path) -> None:
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(root / "train_splits" /
                            "dia0_utt0.mp4")], capture_output=True, text=True)
    assert "Audio: aac" in probe.stderr


def test_cp1252_mirror_is_detected(tmp_path: Path) -> None:
    root = meld_tree(tmp_path, encoding="cp1252")
    assert b"\x92" in (root / "train_sent_emo.csv").read_bytes()
    corpus = prepare(root, {})
    assert corpus.stats["encodings"]["train"] == "cp1252"
    assert by_id(corpus)["train_dia0_utt1"].text == "You must\u2019ve had your hands full."
    with pytest.raises(ManifestError, match=r"train_sent_emo.csv:line 2: not valid utf-8"):
        prepare(root, {"encoding": "utf-8"})


def test_sentiment_labels_splits_and_unlabelled(root: Path) -> None:
    corpus = prepare(root, {"label_set": "sentiment", "splits": ["test"]})
    assert corpus.classes == ["neutral", "positive", "negative"]
    assert [(u.utt_id, u.label) for u in corpus.utterances] == [("test_dia0_utt0", "negative"),
                                                                 ("test_dia0_utt1", "neutral")]
    corpus = prepare(root, {"classes": ["neutral", "joy", "anger"], "splits": ["train"]})
    assert corpus.stats["labelled"] == 3 and corpus.stats["unlabelled"] == 2
    corpus = prepare(root, {"classes": ["neutral", "joy", "anger"], "splits": ["train"], "outside_classes": "drop"})
    assert len(corpus.utterances) == 3 and corpus.stats["dropped_unlabelled"] == 2


def _broken(root: Path, tmp_path: Path, split: str, old: bytes, new: bytes) -> Path:
    copy = tmp_path / "MELD.Raw"
    shutil.copytree(root, copy)
    path = copy / f"{split}_sent_emo.csv"
    raw = path.read_bytes()
    assert old in raw
    path.write_bytes(raw.replace(old, new, 1))
    return copy


@pytest.mark.parametrize("split, old, new, line, field", [
    ("train", b"Sr No.,Utterance", b"Sr No,Utterance", 1, "Sr No."),
    ("train", b'"0:16:21,940"', b'"0:16:21.9400"', 3, "StartTime"),
    ("dev", b",disgust,", b",disgusted,", 4, "Emotion"),
    ("dev", b",negative,110,", b",negative,11O,", 4, "Dialogue_ID"),
    ("test", b"Ross,", b",", 2, "Speaker"),
    ("test", b"What was that?,", b"What, was that?,", 2, None),
    ("train", b",joy,positive,2,2,", b",joy,positive,2,0,", 5, "Utterance_ID"),
])
def test_malformed_rows_name_file_line_and_field(root: Path, tmp_path: Path, split: str, old: bytes, new: bytes,
                                                 line: int, field: str | None) -> None:
    broken = _broken(root, tmp_path, split, old, new)
    with pytest.raises(ManifestError) as info:
        prepare(broken, {})
    assert info.value.source.endswith(f"{split}_sent_emo.csv")
    assert (info.value.line, info.value.field) == (line, field)


def test_layout_and_option_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        prepare(tmp_path / "nowhere", {})
    with pytest.raises(CorpusLayoutError, match="train_sent_emo.csv"):
        prepare(root.parent, {})
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("output_repeated_splits_test"))
    with pytest.raises(CorpusLayoutError, match="extract test.tar.gz"):
        prepare(copy, {})
    with pytest.raises(CorpusOptionError, match="label_set"):
        prepare(root, {"label_set": "emotions"})
    with pytest.raises(CorpusOptionError, match="splits"):
        prepare(root, {"splits": ["val"]})
