"""Each adapter's standard protocols: a corpus entry with only adapter/root/options runs the split stage.

The protocols are built on manifests shaped like each full release (its speakers, sessions, dialogues and official
split), since the media fixtures are too small for e.g. IEMOCAP's Session 5 holdout; the split stage itself runs on
the MELD media fixture through `affectflow`'s functions with no `splits` key in params.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import corpora
from pipeline.manifest import Utterance
from pipeline.params import ConfigError
from pipeline.prepare import prepare_corpus
from pipeline.splits import build_splits, split_corpus
from tests.corpus_fixtures import iemocap_sessions_tree, meld_tree

CLASSES = ["a", "b"]


def _utts(corpus: str, speakers: list[tuple[str, str]], per_speaker: int = 6, dialogues: bool = False,
          splits: list[str] | None = None) -> list[Utterance]:
    """`per_speaker` utterances for each (speaker, session), labels alternating, every fifth unlabelled."""
    utts = []
    for s, (speaker, session) in enumerate(speakers):
        for i in range(per_speaker):
            dialogue = f"{session}_d{i % 2}" if dialogues else None
            label = None if i % 5 == 4 else CLASSES[i % 2]
            split = splits[s % len(splits)] if splits else None
            utts.append(Utterance(utt_id=f"{speaker}_{i:03d}", corpus=corpus, speaker=speaker, session=session,
                                  dialogue_id=dialogue, label=label, split=split))
    return sorted(utts, key=lambda u: u.utt_id)


SHAPES = {
    # 5 sessions x 2 actors, dyadic dialogues
    "iemocap": lambda: _utts("iemocap", [(f"Ses0{n}_{g}", f"Ses0{n}") for n in range(1, 6) for g in "FM"],
                             dialogues=True),
    # the official split; speakers recur across it
    "meld": lambda: _utts("meld", [(name, "S01E01") for name in ("Ross", "Rachel", "Joey")] * 1, dialogues=True,
                          splits=["train", "dev", "test"]),
    # 6 sessions x 2 actors
    "msp_improv": lambda: _utts("msp_improv", [(f"{g}0{n}", f"session{n}") for n in range(1, 7) for g in "FM"]),
    # 91 actors, each its own session
    "crema_d": lambda: _utts("crema_d", [(str(a), str(a)) for a in range(1001, 1092)], per_speaker=3),
    # 24 actors
    "ravdess": lambda: _utts("ravdess", [(f"Actor_{a:02d}", f"Actor_{a:02d}") for a in range(1, 25)]),
    "demo": lambda: _utts("demo", [(f"s{n}{g}", f"ses{n}") for n in range(1, 5) for g in "FM"], dialogues=True),
}
# protocol -> (kind, number of folds) each adapter documents
EXPECTED = {
    "iemocap": {"speaker": ("speaker_folds", 10), "dialogue": ("holdout", 1), "session": ("session_folds", 5)},
    "meld": {"speaker": ("holdout", 1), "dialogue": ("holdout", 1), "official": ("holdout", 1)},
    "msp_improv": {"speaker": ("speaker_folds", 12), "dialogue": ("session_folds", 6), "session": ("session_folds", 6)},
    "crema_d": {"speaker": ("speaker_folds", 5), "dialogue": ("speaker_folds", 5)},
    "ravdess": {"speaker": ("speaker_folds", 6), "dialogue": ("speaker_folds", 6)},
    "demo": {"speaker": ("speaker_folds", 8), "dialogue": ("session_folds", 4)},
}


def test_every_registered_adapter_has_a_shape_here() -> None:
    assert set(corpora.ADAPTERS) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_the_protocols_models_name_resolve_on_every_adapter(name: str) -> None:
    protocols = corpora.protocols(corpora.adapter(name))
    assert {"speaker", "dialogue"} <= set(protocols)  # models.<m>.protocol: speaker (MMIN, SSMM), dialogue (MMGCN)
    splits = build_splits(name, SHAPES[name](), CLASSES, protocols, [0.5, 1.0], 0)
    found = {p: (proto["kind"], len(proto["folds"])) for p, proto in splits["protocols"].items()}
    assert found == EXPECTED[name]


def test_iemocap_dialogue_protocol_holds_out_session_5_whole_dialogues() -> None:
    utts = SHAPES["iemocap"]()
    fold = build_splits("iemocap", utts, CLASSES, corpora.protocols(corpora.adapter("iemocap")), [1.0],
                        0)["protocols"]["dialogue"]["folds"][0]
    by_id = {u.utt_id: u for u in utts}
    assert {by_id[i].session for i in fold["test"]} == {"Ses05"}
    assert "Ses05" not in {by_id[i].session for i in fold["train"] + fold["val"]}
    val_dialogues = {by_id[i].dialogue_id for i in fold["val"]}
    assert val_dialogues and not val_dialogues & {by_id[i].dialogue_id for i in fold["train"]}


def test_speaker_groups_are_disjoint_and_cover_every_speaker() -> None:
    utts = SHAPES["crema_d"]()
    folds = build_splits("crema_d", utts, CLASSES, corpora.protocols(corpora.adapter("crema_d")), [1.0],
                         0)["protocols"]["speaker"]["folds"]
    groups = [set(f["test_group"]) for f in folds]
    assert sum(len(g) for g in groups) == 91 and set().union(*groups) == {u.speaker for u in utts}
    assert [len(g) for g in groups] == [19, 18, 18, 18, 18]
    assert folds[0]["val_group"] == folds[1]["test_group"]


def test_params_replace_add_and_remove_protocols_by_name() -> None:
    module = corpora.adapter("iemocap")
    merged = corpora.protocols(module, {"speaker": {"protocol": "speaker_folds", "val": "next"}, "dialogue": None,
                                        "random": {"protocol": "random_speakers", "folds": 2}})
    assert merged == {"speaker": {"protocol": "speaker_folds", "val": "next"},
                      "session": {"protocol": "session_folds", "val": "next"},
                      "random": {"protocol": "random_speakers", "folds": 2}}
    assert corpora.protocols(module)["speaker"] == {"protocol": "speaker_folds", "val": "partner"}  # not mutated


def test_speaker_groups_reject_a_bad_count() -> None:
    with pytest.raises(ConfigError, match="folds must be a whole number from 3 to the 24 speakers"):
        build_splits("r", SHAPES["ravdess"](), CLASSES, {"p": {"protocol": "speaker_folds", "folds": 30}}, [1.0], 0)


def test_split_stage_runs_on_an_entry_with_only_adapter_root_and_options(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root = meld_tree(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    params = {"corpora": {"meld": {"adapter": "meld", "root": str(root), "options": {"label_set": "sentiment"}}},
              "splits": {"seed": 0, "labelled_fractions": [1.0]}}
    prepare_corpus(params, "meld")
    out = split_corpus(params, "meld")
    splits = json.loads(out.read_text())
    assert set(splits["protocols"]) == {"speaker", "dialogue", "official"}
    fold = splits["protocols"]["dialogue"]["folds"][0]
    assert sorted(fold["test"]) == ["test_dia0_utt0", "test_dia0_utt1"]
    assert all(i.startswith("dev_") for i in fold["val"]) and all(i.startswith("train_") for i in fold["train"])
    # params still override: one protocol replaced, one removed
    params["corpora"]["meld"]["splits"] = {"speaker": {"protocol": "random_speakers", "folds": 2,
                                                        "test_share": 0.2, "val_share": 0.2},
                                           "official": None}
    splits = json.loads(split_corpus(params, "meld").read_text())
    assert set(splits["protocols"]) == {"speaker", "dialogue"}
    assert splits["protocols"]["speaker"]["kind"] == "random_speakers"


def test_an_adapter_protocol_that_does_not_fit_part_of_the_release_is_left_out_and_listed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """IEMOCAP read with `sessions: [1, 2, 3]` has no Session 5 to hold out: the adapter's `dialogue` protocol is
    left out with a warning and named in the split file; the same protocol written in params fails the stage."""
    root = iemocap_sessions_tree(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    params = {"corpora": {"iemocap": {"adapter": "iemocap", "root": str(root),
                                      "options": {"sessions": [1, 2, 3]}}},
              "splits": {"seed": 0, "labelled_fractions": [1.0]}}
    prepare_corpus(params, "iemocap")
    splits = json.loads(split_corpus(params, "iemocap").read_text())
    assert set(splits["protocols"]) == {"speaker", "session"}
    assert len(splits["protocols"]["speaker"]["folds"]) == 6
    assert "Ses05" in splits["skipped_protocols"]["dialogue"]
    assert "'dialogue' does not fit this corpus" in caplog.text
    params["corpora"]["iemocap"]["splits"] = {"dialogue": {"protocol": "holdout", "test_sessions": ["Ses05"]}}
    with pytest.raises(ConfigError, match="Ses05"):
        split_corpus(params, "iemocap")
