"""Every adapter on the variants real copies of the releases contain: the same content must give the same
utterances, whatever the line ends, byte-order marks, padding, extension case or macOS debris; what cannot be
read (UTF-16 without a byte-order mark, two files differing only in extension case) is an error naming the file.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from pipeline.corpora import PreparedCorpus, adapter
from pipeline.corpora.common import CorpusLayoutError, CorpusOptionError
from pipeline.manifest import ManifestError, validate
from pipeline.prepare import MAX_LOG_LINE, prepare_corpus
from tests import corpus_fixtures as fx

TREES = {
    "iemocap": (fx.iemocap_tree, {"sessions": [1, 2]}),
    "meld": (fx.meld_tree, {}),
    "msp_improv": (fx.msp_tree, {}),
    "crema_d": (fx.crema_tree, {"label_source": "multimodal"}),  # reads processedResults/summaryTable.csv
    "ravdess": (fx.ravdess_tree, {}),
}


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    out = {}
    for name, (make, options) in TREES.items():
        root = make(tmp_path_factory.mktemp(f"{name}-base"))
        out[name] = [u.to_json() for u in adapter(name).prepare(root, options).utterances]
    return out


def _prepare(name: str, root: Path) -> PreparedCorpus:
    corpus = adapter(name).prepare(root, TREES[name][1])
    validate(corpus.utterances, corpus.classes, root)
    return corpus


# --------------------------------------------------------------------------------------------- text files
@pytest.mark.parametrize("variant", sorted(fx.TEXT_VARIANTS))
@pytest.mark.parametrize("name", sorted(fx.TEXT_FILES))
def test_text_variants_give_the_same_utterances(name: str, variant: str, tmp_path: Path,
                                                baselines: dict[str, list[str]]) -> None:
    root = TREES[name][0](tmp_path)
    files = fx.rewrite_text(root, name, fx.TEXT_VARIANTS[variant])
    assert files  # the variant really touched what the adapter reads
    if variant == "utf16_bom":
        assert files[0].read_bytes()[:2] == b"\xff\xfe"
    corpus = _prepare(name, root)
    assert [u.to_json() for u in corpus.utterances] == baselines[name]
    if name == "meld":
        expected = "utf-16" if variant == "utf16_bom" else "utf-8"
        assert corpus.stats["encodings"] == {"train": expected, "dev": expected, "test": expected}


@pytest.mark.parametrize("name", sorted(fx.TEXT_FILES))
def test_utf16_without_bom_is_an_error_naming_the_encoding_and_file(name: str, tmp_path: Path) -> None:
    root = TREES[name][0](tmp_path)
    files = fx.rewrite_text(root, name, lambda text: text.encode("utf-16-le"))
    with pytest.raises(ManifestError, match="UTF-16") as info:
        adapter(name).prepare(root, TREES[name][1])
    assert info.value.source in {str(f) for f in files}
    assert "encoding: utf-16-le" in str(info.value)


def test_utf16_without_bom_reads_with_the_encoding_option(tmp_path: Path, baselines: dict[str, list[str]]) -> None:
    root = fx.meld_tree(tmp_path)
    fx.rewrite_text(root, "meld", lambda text: text.encode("utf-16-le"))
    corpus = adapter("meld").prepare(root, {"encoding": "utf-16-le"})
    assert [u.to_json() for u in corpus.utterances] == baselines["meld"]


# ----------------------------------------------------------------------------------------------- media names
@pytest.mark.parametrize("name", sorted(TREES))
def test_upper_case_extensions_are_found(name: str, tmp_path: Path, baselines: dict[str, list[str]]) -> None:
    root = TREES[name][0](tmp_path)
    assert fx.upper_extensions(root, fx.MEDIA_SUFFIXES[name]) > 0
    corpus = _prepare(name, root)
    paths = [seg.path for u in corpus.utterances for seg in (u.audio, u.video) if seg is not None]
    assert paths and all(re.search(r"\.[A-Z0-9]+$", p) for p in paths)
    assert all((root / p).is_file() for p in paths)

    def lower_suffixes(record: str) -> str:
        return re.sub(r'\.(WAV|AVI|MP4|FLV)"', lambda m: f'.{m[1].lower()}"', record)

    assert [lower_suffixes(u.to_json()) for u in corpus.utterances] == baselines[name]


@pytest.mark.parametrize("name, twin", [
    ("iemocap", "Session1/sentences/wav/Ses01F_impro05a/Ses01F_impro05a_F000.WAV"),
    ("meld", "train_splits/dia0_utt0.MP4"),
    ("msp_improv", "session1/S01A/S/MSP-IMPROV-S01A-F01-S-FM01.WAV"),
    ("crema_d", "AudioWAV/1001_DFA_ANG_XX.WAV"),
    ("ravdess", "Audio_Speech_Actors_01-24/Actor_01/03-01-01-01-01-01-01.WAV"),
])
def test_files_differing_only_in_extension_case_are_an_error_naming_both(name: str, twin: str,
                                                                         tmp_path: Path) -> None:
    root = TREES[name][0](tmp_path)
    original = root / twin
    original = original.with_suffix(original.suffix.lower())
    assert original.is_file()
    fx.put(original, root / twin)
    with pytest.raises((CorpusLayoutError, ManifestError)) as info:
        adapter(name).prepare(root, TREES[name][1])
    assert original.name in str(info.value) and Path(twin).name in str(info.value)


@pytest.mark.parametrize("name", sorted(TREES))
def test_macos_debris_is_ignored(name: str, tmp_path: Path, baselines: dict[str, list[str]]) -> None:
    root = TREES[name][0](tmp_path)
    assert fx.macos_debris(root) > 0
    assert any(p.name.startswith("._") and p.suffix == ".wav" for p in (root / "__MACOSX").rglob("*")) or \
        name == "meld"
    assert [u.to_json() for u in _prepare(name, root).utterances] == baselines[name]


# ------------------------------------------------------------------------------------------------ MELD times
@pytest.mark.parametrize("written, seconds", [
    ("00:06:47,28", 407.28), ("00:06:47,2", 407.2), ("0:06:47,280", 407.28), ("00:06:47,028", 407.028),
    ("00:06:47.28", 407.28),
])
def test_meld_times_with_one_to_three_fractional_digits(written: str, seconds: float, tmp_path: Path) -> None:
    root = fx.meld_tree(tmp_path)
    csv_path = root / "train_sent_emo.csv"
    csv_path.write_bytes(csv_path.read_bytes().replace(b'"00:16:16,059"', f'"{written}"'.encode(), 1)
                         .replace(b'"00:16:21,731"', b'"00:16:21,7"', 1))
    utts = {u.utt_id: u for u in adapter("meld").prepare(root, {}).utterances}
    assert utts["train_dia0_utt0"].extra["episode_start"] == pytest.approx(seconds, abs=1e-9)
    assert utts["train_dia0_utt0"].extra["episode_end"] == pytest.approx(981.7, abs=1e-9)


@pytest.mark.parametrize("written", ["00:06:47,2800", "00:06:47", "00:06:47,", "6:47,28"])
def test_meld_times_that_are_not_times_name_line_and_field(written: str, tmp_path: Path) -> None:
    root = fx.meld_tree(tmp_path)
    csv_path = root / "train_sent_emo.csv"
    csv_path.write_bytes(csv_path.read_bytes().replace(b'"00:16:16,059"', f'"{written}"'.encode(), 1))
    with pytest.raises(ManifestError, match="1 to 3 digits after the comma") as info:
        adapter("meld").prepare(root, {})
    assert (info.value.line, info.value.field) == (2, "StartTime")


# ------------------------------------------------------------------------------------------------- CREMA-D audio
def test_crema_d_audio_follows_the_mp3_folder(tmp_path: Path) -> None:
    root = fx.crema_tree(tmp_path, audio="mp3")
    corpus = adapter("crema_d").prepare(root, {"audio_dir": "AudioMP3"})
    assert all(u.audio is not None and u.audio.path.startswith("AudioMP3/") and u.audio.path.endswith(".mp3")
               for u in corpus.utterances)
    assert corpus.stats["missing_audio"] == 0


def test_crema_d_audio_folder_of_unknown_format_names_the_option(tmp_path: Path) -> None:
    root = fx.crema_tree(tmp_path)
    (root / "AudioWAV").rename(root / "Sound")
    with pytest.raises(CorpusOptionError, match="audio_format"):
        adapter("crema_d").prepare(root, {"audio_dir": "Sound"})
    corpus = adapter("crema_d").prepare(root, {"audio_dir": "Sound", "audio_format": "wav"})
    assert all(u.audio.path.startswith("Sound/") for u in corpus.utterances)


def test_crema_d_audio_from_the_flv_when_audiowav_is_absent(tmp_path: Path) -> None:
    root = fx.crema_tree(tmp_path, audio=None)
    with pytest.raises(CorpusLayoutError, match="audio_from_video"):
        adapter("crema_d").prepare(root, {})
    corpus = adapter("crema_d").prepare(root, {"audio_from_video": True})
    utts = {u.utt_id: u for u in corpus.utterances}
    assert utts["1001_DFA_ANG_XX"].audio.path == utts["1001_DFA_ANG_XX"].video.path == \
        "VideoFlash/1001_DFA_ANG_XX.flv"
    assert utts[fx.CREMA_BLANK_FLV].audio is None  # the blank flv has no sound track either
    assert corpus.stats["audio_from_video"] == len(fx.CREMA_CLIPS) - 1


# ------------------------------------------------------------------------------------ IEMOCAP label counting
def test_iemocap_4class_counts_mmins_5531_on_the_release_code_distribution(tmp_path: Path) -> None:
    root = fx.iemocap_label_tree(tmp_path)
    options = {"audio": "none", "video": False}
    corpus = adapter("iemocap").prepare(root, options)
    assert corpus.stats["utterances"] == 10039
    assert corpus.stats["codes"] == dict(sorted(fx.IEMOCAP_RELEASE_CODES.items()))
    assert corpus.stats["labelled"] == 5531 and corpus.stats["unlabelled"] == 10039 - 5531
    assert corpus.stats["labels"] == {"ang": 1103, "hap": 595 + 1041, "neu": 1708, "sad": 1084}
    codes_of_unlabelled = {}
    for utt in corpus.utterances:
        assert utt.extra["code"] in fx.IEMOCAP_RELEASE_CODES  # the release's code always kept
        if utt.label is None:
            codes_of_unlabelled[utt.extra["code"]] = codes_of_unlabelled.get(utt.extra["code"], 0) + 1
    assert codes_of_unlabelled == {"dis": 2, "fea": 40, "fru": 1849, "oth": 3, "sur": 107, "xxx": 2507}

    dropped = adapter("iemocap").prepare(root, {**options, "outside_classes": "drop"})
    assert dropped.stats["utterances"] == dropped.stats["labelled"] == 5531
    assert dropped.stats["codes"] == corpus.stats["codes"]  # every code counted, kept or not
    assert dropped.stats["dropped_outside_classes"] == codes_of_unlabelled
    assert {u.extra["code"] for u in dropped.utterances} == {"ang", "exc", "hap", "neu", "sad"}

    six = adapter("iemocap").prepare(root, {**options, "label_set": "6class", "outside_classes": "drop"})
    assert six.stats["labelled"] == 1708 + 1849 + 1103 + 1084 + 1041 + 595


def test_outside_classes_rejects_other_values(tmp_path: Path) -> None:
    root = fx.iemocap_tree(tmp_path)
    with pytest.raises(CorpusOptionError, match="outside_classes"):
        adapter("iemocap").prepare(root, {"sessions": [1, 2], "outside_classes": "keep"})


# --------------------------------------------------------------------------------------- prepare's one line
def test_prepare_logs_one_short_line_and_lists_go_to_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """MELD with 3,000 rows whose clips are all missing: the log holds counts, stats.json the paths."""
    root = fx.meld_tree(tmp_path / "corpus")
    for clip_dir in fx.MELD_CLIP_DIRS.values():
        for clip in (root / clip_dir).iterdir():
            clip.unlink()
    rows = [f'{i},"Line {i}.",Joey,joy,positive,{1000 + i // 10},{i % 10},1,1,"00:00:01,000","00:00:02,50"'
            for i in range(3000)]
    csv_path = root / "train_sent_emo.csv"
    csv_path.write_bytes(csv_path.read_bytes() + "\r\n".join(rows).encode() + b"\r\n")
    monkeypatch.chdir(tmp_path)
    params = {"corpora": {"meld": {"adapter": "meld", "root": str(root)}}}
    with caplog.at_level(logging.DEBUG):
        prepare_corpus(params, "meld")
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1, lines
    assert len(lines[0]) <= MAX_LOG_LINE and "missing_clips 3010" in lines[0] and "stats.json" in lines[0]
    assert max(len(r.getMessage()) for r in caplog.records) <= MAX_LOG_LINE
    stats = json.loads((tmp_path / "data/meld/stats.json").read_text())
    assert len(stats["missing_clips"]) == 3010 and "train_splits/dia1000_utt0.mp4" in stats["missing_clips"]


@pytest.mark.parametrize("written", ["EVALUATION.TXT", "evalution.txt"])
def test_msp_improv_labels_file_in_any_case(written: str, tmp_path: Path, baselines: dict[str, list[str]]) -> None:
    root = fx.msp_tree(tmp_path, evaluation_name=written)
    corpus = adapter("msp_improv").prepare(root, {})
    assert corpus.stats["evaluation_file"] == written
    assert [u.to_json() for u in corpus.utterances] == baselines["msp_improv"]
