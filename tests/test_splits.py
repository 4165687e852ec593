"""Split protocols, their checks, the hidden-label fractions and determinism from the seed."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.manifest import Utterance
from pipeline.params import ConfigError
from pipeline.splits import (
    Fold,
    SplitError,
    build_splits,
    check_fold,
    check_hidden,
    fold_ids,
    hide_labels,
    write_splits,
)

CLASSES = ["ang", "hap", "neu", "sad"]


def corpus(sessions: int = 4, dialogues: int = 3, turns: int = 10, with_split: bool = False) -> list[Utterance]:
    utts = []
    for s in range(1, sessions + 1):
        for d in range(dialogues):
            for t in range(turns):
                gender = "FM"[t % 2]
                k = len(utts)
                label = None if k % 7 == 0 else CLASSES[(k * 5 + t) % 4]
                split = None
                if with_split:
                    split = "test" if s == sessions else "dev" if s == sessions - 1 else "train"
                utts.append(Utterance(utt_id=f"S{s}_D{d}_{t:03d}", corpus="t", speaker=f"S{s}{gender}",
                                      session=f"S{s}", dialogue_id=f"S{s}_D{d}", turn=t, text="x", label=label,
                                      split=split))
    return utts


def protocol(utts, cfg, fractions=(0.1, 0.5, 1.0), seed=0):
    return build_splits("t", utts, CLASSES, {"p": cfg}, fractions, seed)["protocols"]["p"]


def test_speaker_folds_partner_validation() -> None:
    utts = corpus()
    by_id = {u.utt_id: u for u in utts}
    proto = protocol(utts, {"protocol": "speaker_folds", "val": "partner"})
    assert len(proto["folds"]) == 8
    fold = proto["folds"][0]
    assert fold["test_group"] == ["S1F"] and fold["val_group"] == ["S1M"]
    assert {by_id[i].speaker for i in fold["test"]} == {"S1F"}
    assert {by_id[i].speaker for i in fold["val"]} == {"S1M"}
    assert "S1F" not in {by_id[i].speaker for i in fold["train"] + fold["unlabelled"]}
    assert all(by_id[i].label is None for i in fold["unlabelled"])
    assert all(by_id[i].label is not None for i in fold["train"] + fold["val"] + fold["test"])
    labelled = sum(u.label is not None for u in utts)
    assert all(len(f["train"]) + len(f["val"]) + len(f["test"]) == labelled for f in proto["folds"])
    assert sorted(f["test_group"][0] for f in proto["folds"]) == sorted({u.speaker for u in utts})


def test_speaker_folds_next_validation() -> None:
    proto = protocol(corpus(), {"protocol": "speaker_folds", "val": "next"})
    assert [f["val_group"][0] for f in proto["folds"]][:2] == ["S1M", "S2F"]


def test_session_folds_keep_dialogues_whole() -> None:
    utts = corpus()
    by_id = {u.utt_id: u for u in utts}
    for val in ("next", 0.2):
        proto = protocol(utts, {"protocol": "session_folds", "val": val})
        assert len(proto["folds"]) == 4
        for fold in proto["folds"]:
            dialogues = {p: {by_id[i].dialogue_id for i in fold[p]} for p in ("train", "val", "test")}
            assert not dialogues["train"] & dialogues["test"] and not dialogues["train"] & dialogues["val"]
            assert {by_id[i].session for i in fold["test"]} == set(fold["test_group"])


def test_holdout_by_sessions_and_official_split() -> None:
    utts = corpus(with_split=True)
    by_id = {u.utt_id: u for u in utts}
    fold = protocol(utts, {"protocol": "holdout", "test_sessions": ["S4"], "val": 0.25})["folds"][0]
    assert {by_id[i].session for i in fold["test"]} == {"S4"}
    assert len({by_id[i].dialogue_id for i in fold["val"]}) == 2  # 25% of 9 training dialogues
    fold = protocol(utts, {"protocol": "holdout"})["folds"][0]
    assert {by_id[i].split for i in fold["test"]} == {"test"} and {by_id[i].split for i in fold["val"]} == {"dev"}
    with pytest.raises(ConfigError, match="not sessions of the corpus"):
        protocol(utts, {"protocol": "holdout", "test_sessions": ["S9"]})
    with pytest.raises(ConfigError, match="no utterance has split"):
        protocol(corpus(), {"protocol": "holdout"})


def test_random_speakers_are_disjoint_and_seeded() -> None:
    utts = corpus(sessions=5)
    cfg = {"protocol": "random_speakers", "folds": 3, "test_share": 0.2, "val_share": 0.1}
    a, b, c = protocol(utts, cfg, seed=1), protocol(utts, cfg, seed=1), protocol(utts, cfg, seed=2)
    assert a == b and a != c
    for fold in a["folds"]:
        assert len(fold["test_group"]) == 2 and len(fold["val_group"]) == 1
        assert not set(fold["test_group"]) & set(fold["val_group"])


def test_hidden_labels_are_stratified_within_one_utterance() -> None:
    utts = [u for u in corpus(sessions=6, dialogues=4) if u.label is not None]
    totals = Counter(u.label for u in utts)
    for fraction in (0.05, 0.1, 0.33, 0.5, 1.0):
        hidden = set(hide_labels(utts, fraction, seed=3, key="f"))
        kept = Counter(u.label for u in utts if u.utt_id not in hidden)
        for label, total in totals.items():
            assert abs(kept[label] - fraction * total) <= 1, (fraction, label)
    assert hide_labels(utts, 0.3, 3, "f") == hide_labels(utts, 0.3, 3, "f")
    assert hide_labels(utts, 0.3, 3, "f") != hide_labels(utts, 0.3, 4, "f")
    with pytest.raises(ConfigError):
        hide_labels(utts, 0.0, 3, "f")


def test_split_file_has_conditions_pool_and_seed(tmp_path: Path) -> None:
    utts = corpus()
    protocols = {"speaker": {"protocol": "speaker_folds"}, "dialogue": {"protocol": "session_folds", "val": 0.2}}
    splits = build_splits("t", utts, CLASSES, protocols, [0.1, 1.0], 7)
    assert splits["seed"] == 7 and splits["classes"] == CLASSES
    assert splits["conditions"]["azz"] == [1, 0, 0] and splits["conditions"]["zvl"] == [0, 1, 1]
    assert splits["missing_conditions"] == ["azz", "zvz", "zzl", "avz", "azl", "zvl"]
    assert splits["unlabelled"] == sorted(u.utt_id for u in utts if u.label is None)
    assert set(splits["protocols"]["speaker"]["hidden_labels"]) == {"0.1", "1"}
    write_splits(tmp_path / "a.json", splits)
    write_splits(tmp_path / "b.json", build_splits("t", utts, CLASSES, protocols, [0.1, 1.0], 7))
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    ids = fold_ids(json.loads((tmp_path / "a.json").read_text()), "speaker", "fold02")
    assert set(ids) == {"train", "val", "test", "unlabelled"}
    with pytest.raises(ConfigError, match="not in the split file"):
        fold_ids(splits, "nope", 0)


def test_checks_catch_broken_folds() -> None:
    utts = corpus()
    by_id = {u.utt_id: u for u in utts}
    labelled = [u.utt_id for u in utts if u.label is not None]
    s1 = [i for i in labelled if by_id[i].speaker == "S1F"]
    s2 = [i for i in labelled if by_id[i].speaker == "S2F"]
    with pytest.raises(SplitError, match="in both train and test"):
        check_fold(Fold("f", s1 + s2, [], s2[:1], [], [], []), by_id, "speaker_folds")
    with pytest.raises(SplitError, match="not in the manifest"):
        check_fold(Fold("f", s1, [], ["ghost"], [], [], []), by_id, "speaker_folds")
    s1m = [i for i in labelled if by_id[i].speaker == "S1M"]
    with pytest.raises(SplitError, match=r"speakers \['S1F'\] are in both train and test"):
        check_fold(Fold("f", s1[:3] + s1m, [], s1[3:], [], [], []), by_id, "speaker_folds")
    check_fold(Fold("f", s1[:3] + s1m, [], s1[3:], [], [], []), by_id, "session_folds")  # no speaker promise
    with pytest.raises(SplitError, match="keeps"):
        check_hidden(Fold("f", s1 + s2, [], [], [], [], []), [], 0.1, by_id)
    with pytest.raises(SplitError, match="empty train"):
        check_fold(Fold("f", [], [], s1, [], [], []), by_id, "session_folds")


def test_bad_protocol_configuration() -> None:
    with pytest.raises(ConfigError, match="protocol must be one of"):
        protocol(corpus(), {"protocol": "magic"})
    with pytest.raises(ConfigError, match="val must be 'partner' or 'next'"):
        protocol(corpus(), {"protocol": "speaker_folds", "val": "random"})
