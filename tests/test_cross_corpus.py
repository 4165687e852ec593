"""Cross-corpus protocols: label mapping onto a shared class set, folds over the target, no shared utterance."""

from __future__ import annotations

import pytest

from pipeline.cross_corpus import CrossCorpusError, build_cross_corpus, check_cross_fold, split_qualified
from pipeline.manifest import Utterance

IEMOCAP_LIKE = ["ang", "hap", "exc", "neu", "sad", "fru"]
SHARED = ["ang", "hap", "neu", "sad"]


def _corpus(name: str, labels: list[str], speakers: int, per_speaker: int) -> list[Utterance]:
    utts = []
    for s in range(speakers):
        for i in range(per_speaker):
            label = labels[(s + i) % len(labels)] if i % 7 != 6 else None   # some unlabelled
            utts.append(Utterance(f"{name}_s{s}_{i:03d}", name, f"{name}_spk{s}", f"ses{s // 2}",
                                  dialogue_id=f"{name}_d{s}_{i // 5}", turn=i % 5, label=label))
    return utts


def _cfg(**over: object) -> dict:
    cfg = {"sources": ["src"], "target": "tgt", "classes": SHARED, "target_folds": 3, "source_val": 0.2,
           "mapping": {"src": {"ang": "ang", "hap": "hap", "exc": "hap", "neu": "neu", "sad": "sad"},
                       "tgt": {c: c for c in SHARED}}}
    cfg.update(over)
    return cfg


def _build(cfg: dict) -> dict:
    manifests = {"src": _corpus("src", IEMOCAP_LIKE, 4, 30), "tgt": _corpus("tgt", SHARED, 6, 20),
                 "src2": _corpus("src2", SHARED, 3, 10)}
    classes = {"src": IEMOCAP_LIKE, "tgt": SHARED, "src2": SHARED}
    return build_cross_corpus("iemocap_to_msp", cfg, manifests, classes, seed=0)


def test_mapping_drops_and_counts_unmapped_labels() -> None:
    split = _build(_cfg())
    assert split["dropped"]["src"] == {"fru": sum(1 for u in _corpus("src", IEMOCAP_LIKE, 4, 30) if u.label == "fru")}
    assert split["dropped"]["tgt"] == {}
    assert set(split["labels"].values()) == set(SHARED)
    assert split["cultures"] == {"src": 0, "tgt": 1}
    exc = [q for q in split["labels"] if q.startswith("src/")
           and next(u for u in _corpus("src", IEMOCAP_LIKE, 4, 30) if u.utt_id == split_qualified(q)[1]).label == "exc"]
    assert exc and all(split["labels"][q] == "hap" for q in exc)


def test_source_and_target_never_share_an_utterance() -> None:
    split = _build(_cfg(sources=["src", "src2"], mapping={**_cfg()["mapping"], "src2": {c: c for c in SHARED}}))
    assert len(split["folds"]) == 3
    tests = set()
    for fold in split["folds"]:
        source = set(fold["train"]) | set(fold["val"])
        target = set(fold["test"]) | set(fold["adaptation"])
        assert source and target and not source & target
        assert {split_qualified(q)[0] for q in source} == {"src", "src2"}
        assert {split_qualified(q)[0] for q in target} == {"tgt"}
        assert not set(fold["in_corpus"]["train"]) & set(fold["test"])
        assert set(fold["in_corpus"]["train"]) <= set(fold["adaptation"])
        tests |= set(fold["test"])
    labelled_target = {q for q in split["labels"] if q.startswith("tgt/")}
    assert tests == labelled_target                      # every labelled target utterance is tested once


def test_adaptation_pool_holds_no_test_speaker() -> None:
    speaker = {f"tgt/{u.utt_id}": u.speaker for u in _corpus("tgt", SHARED, 6, 20)}
    split = _build(_cfg())
    for fold in split["folds"]:
        assert {speaker[q] for q in fold["test"]} == set(fold["test_group"])
        assert not {speaker[q] for q in fold["adaptation"]} & set(fold["test_group"])


def test_overlap_is_caught() -> None:
    fold = _build(_cfg())["folds"][0]
    broken = {**fold, "adaptation": [*fold["adaptation"], fold["test"][0]]}
    with pytest.raises(CrossCorpusError, match="in both test and adaptation"):
        check_cross_fold(broken, "tgt")
    leaked = {**fold, "train": [*fold["train"], "tgt/x"]}
    with pytest.raises(CrossCorpusError, match="target utterance 'tgt/x' in the source train part"):
        check_cross_fold(leaked, "tgt")


def test_mapping_onto_an_unknown_class_names_corpus_and_label() -> None:
    cfg = _cfg()
    cfg["mapping"]["src"]["exc"] = "joy"
    with pytest.raises(CrossCorpusError, match=r"mapping\.src: 'exc' maps onto 'joy'"):
        _build(cfg)


def test_mapping_of_a_label_the_corpus_lacks() -> None:
    cfg = _cfg()
    cfg["mapping"]["tgt"]["xxx"] = "neu"
    with pytest.raises(CrossCorpusError, match=r"mapping\.tgt: 'xxx' is not a label of corpus 'tgt'"):
        _build(cfg)


def test_a_class_left_empty_names_corpus_and_class() -> None:
    cfg = _cfg()
    del cfg["mapping"]["tgt"]["sad"]
    with pytest.raises(CrossCorpusError, match=r"corpus 'tgt' maps onto the shared class\(es\) \['sad'\]"):
        _build(cfg)


def test_target_among_sources_and_missing_mapping_are_refused() -> None:
    with pytest.raises(CrossCorpusError, match="none of them the target"):
        _build(_cfg(sources=["tgt"]))
    cfg = _cfg()
    del cfg["mapping"]["tgt"]
    with pytest.raises(CrossCorpusError, match="no mapping for corpus 'tgt'"):
        _build(cfg)


def test_deterministic() -> None:
    assert _build(_cfg()) == _build(_cfg())
