"""Every manifest rule rejects its bad case with a message naming the field and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.manifest import (
    ManifestError,
    Segment,
    Utterance,
    VideoSegment,
    read_manifest,
    validate,
    write_manifest,
)

CLASSES = ["ang", "hap", "neu", "sad"]


def utt(utt_id: str = "d1_000", **kw) -> Utterance:
    base = dict(utt_id=utt_id, corpus="c", speaker="s1", session="ses1", dialogue_id="d1", turn=0,
                audio=Segment("wav/a.wav", 0.0, 1.5), video=VideoSegment("v/a.mp4", face_region="left"),
                text="hello", label="hap", vad={"valence": 3.0})
    base.update(kw)
    return Utterance(**base)


def test_round_trip_sorted_and_equal(tmp_path: Path) -> None:
    utts = [utt("d1_002", turn=2), utt("d1_000", turn=0), utt("d1_001", turn=1, label=None, video=None)]
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, utts, CLASSES, tmp_path)
    back = read_manifest(path, CLASSES, tmp_path)
    assert [u.utt_id for u in back] == ["d1_000", "d1_001", "d1_002"]
    assert back == sorted(utts, key=lambda u: u.utt_id)
    assert isinstance(back[0].video, VideoSegment) and back[0].video.face_region == "left"


@pytest.mark.parametrize("bad, field", [
    (dict(utt_id="bad id!"), "utt_id"),
    (dict(utt_id=""), "utt_id"),
    (dict(speaker=""), "speaker"),
    (dict(session=None), "session"),
    (dict(label="joy"), "label"),
    (dict(audio=Segment("/abs/a.wav")), "audio.path"),
    (dict(audio=Segment("../outside.wav")), "audio.path"),
    (dict(video=VideoSegment("v/../../x.mp4")), "video.path"),
    (dict(audio=Segment("a.wav", 2.0, 1.0)), "audio.start"),
    (dict(audio=Segment("a.wav", -1.0, 1.0)), "audio.start"),
    (dict(video=VideoSegment("v.mp4", face_region="top")), "video.face_region"),
    (dict(turn=-1), "turn"),
    (dict(dialogue_id=None, turn=3), "turn"),
    (dict(vad={"valence": "high"}), "vad"),
])
def test_each_rule_names_field_and_line(bad: dict, field: str) -> None:
    good = [utt("d0_000", dialogue_id="d0"), utt("d0_001", dialogue_id="d0", turn=1)]
    with pytest.raises(ManifestError) as info:
        validate([*good, utt(**{"utt_id": "d9_000", "dialogue_id": "d9", **bad})], CLASSES, source="m.jsonl")
    assert info.value.field == field
    assert info.value.line == 3
    assert "m.jsonl:line 3" in str(info.value) and f"field '{field}'" in str(info.value)


def test_duplicate_id_names_both_lines() -> None:
    with pytest.raises(ManifestError, match="duplicate id 'd1_000' \\(first on line 1\\)") as info:
        validate([utt("d1_000"), utt("d1_000", dialogue_id="d2")], CLASSES)
    assert info.value.line == 2 and info.value.field == "utt_id"


def test_repeated_turn_in_dialogue() -> None:
    with pytest.raises(ManifestError, match="turn 0 of dialogue 'd1' repeats") as info:
        validate([utt("d1_000"), utt("d1_001")], CLASSES)
    assert info.value.field == "turn"


def test_path_escaping_root_through_symlink(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ManifestError, match="leaves the corpus root") as info:
        validate([utt(audio=Segment("link/x.wav"))], CLASSES, root=root)
    assert info.value.field == "audio.path"


def test_reader_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    good = utt("a_000", dialogue_id="a").to_json()
    path.write_text(good + "\n" + "{not json\n")
    with pytest.raises(ManifestError, match=r"manifest.jsonl:line 2: not valid JSON"):
        read_manifest(path)
    record = json.loads(good)
    record["utt_id"] = "b_000"
    record["colour"] = "red"
    path.write_text(good + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ManifestError, match="unknown fields") as info:
        read_manifest(path)
    assert info.value.line == 2 and info.value.field == "colour"
    record.pop("colour")
    record["label"] = "joy"
    path.write_text(good + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ManifestError, match="'joy' is not in the class list") as info:
        read_manifest(path, CLASSES)
    assert info.value.line == 2 and info.value.field == "label"


def test_reader_rejects_unsorted(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text(utt("b_000", dialogue_id="b").to_json() + "\n" + utt("a_000", dialogue_id="a").to_json() + "\n")
    with pytest.raises(ManifestError, match="not sorted") as info:
        read_manifest(path)
    assert info.value.line == 2


def test_written_manifest_is_byte_stable(tmp_path: Path) -> None:
    utts = [utt(f"d1_{i:03d}", turn=i, text="caf\u00e9 \u201cquoted\u201d") for i in range(5)]
    write_manifest(tmp_path / "a.jsonl", utts, CLASSES)
    write_manifest(tmp_path / "b.jsonl", list(reversed(utts)), CLASSES)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert "\u201c" in (tmp_path / "a.jsonl").read_text(encoding="utf-8")
