"""Cross-corpus (cross-culture) protocols: train on source corpora, test on a target corpus.

A protocol names source corpora (training and validation), one target corpus (test), a shared class set and each
corpus's mapping of its own labels onto it (IEMOCAP's `exc` -> `hap`, ...). Labels a mapping leaves out are
dropped and counted. Utterance ids are qualified by their corpus (`<corpus>/<utt_id>`, a manifest id never holds
a `/`), so corpora never share an id, and every utterance carries its corpus's culture id (sources in order, the
target last).

Folds rotate over the target: its speakers, in id order, are cut into `target_folds` groups; in fold i, group i's
labelled utterances are the test part, and every other target utterance (labelled or not) is the adaptation pool,
offered to a model WITHOUT its label. The same fold also carries the in-corpus upper bound's parts: training and
validation on the other groups' labelled target utterances, tested on the same test part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import AffectflowError
from pipeline.manifest import Utterance

CROSS_CORPUS_FORMAT = 1


class CrossCorpusError(AffectflowError, ValueError):
    """A cross-corpus protocol that cannot be built as configured."""


def qualified(corpus: str, utt_id: str) -> str:
    return f"{corpus}/{utt_id}"


def split_qualified(utt_id: str) -> tuple[str, str]:
    corpus, sep, local = utt_id.partition("/")
    if not sep:
        raise CrossCorpusError(f"{utt_id!r} is not a corpus-qualified id (<corpus>/<utt_id>)")
    return corpus, local


def check_mapping(name: str, corpus: str, mapping: Mapping[str, str], corpus_classes: Sequence[str],
                  shared: Sequence[str]) -> None:
    """Every key is one of the corpus's labels and every value one of the shared classes."""
    where = f"cross_corpus.{name}.mapping.{corpus}"
    for label, target in mapping.items():
        if label not in corpus_classes:
            raise CrossCorpusError(f"{where}: {label!r} is not a label of corpus {corpus!r}",
                                   fix=f"its labels are {list(corpus_classes)}")
        if target not in shared:
            raise CrossCorpusError(f"{where}: {label!r} maps onto {target!r}, which is not a shared class",
                                   fix=f"the shared classes are {list(shared)}")


def map_labels(name: str, corpus: str, utts: Sequence[Utterance], mapping: Mapping[str, str],
               shared: Sequence[str]) -> tuple[dict[str, str | None], dict[str, int]]:
    """Shared label per qualified id (None: unlabelled in the release) and the count of dropped labels per release
    label. Dropped utterances are left out; a shared class no label of the corpus maps onto is an error."""
    labels: dict[str, str | None] = {}
    dropped: Counter[str] = Counter()
    for u in utts:
        if u.label is None:
            labels[qualified(corpus, u.utt_id)] = None
        elif u.label in mapping:
            labels[qualified(corpus, u.utt_id)] = mapping[u.label]
        else:
            dropped[u.label] += 1
    present = Counter(v for v in labels.values() if v is not None)
    empty = [c for c in shared if present[c] == 0]
    if empty:
        raise CrossCorpusError(f"cross_corpus.{name}.mapping.{corpus}: no utterance of corpus {corpus!r} maps onto "
                               f"the shared class(es) {empty}",
                               fix="map one of its labels onto each shared class, or drop the class from `classes`")
    return labels, dict(sorted(dropped.items()))


def _speaker_groups(utts: Sequence[Utterance], k: int, name: str, target: str) -> list[set[str]]:
    speakers = sorted({u.speaker for u in utts})
    if not isinstance(k, int) or isinstance(k, bool) or not 2 <= k <= len(speakers):
        raise CrossCorpusError(f"cross_corpus.{name}.target_folds: a whole number from 2 to the {len(speakers)} "
                               f"speakers of {target!r}, got {k!r}")
    return [set(part) for part in np.array_split(np.array(speakers, dtype=object), k)]


def _source_val(utts: Mapping[str, Sequence[Utterance]], share: float, seed: int) -> set[str]:
    """Qualified ids of a seeded share of each source corpus's dialogues (whole dialogues stay together)."""
    chosen: set[str] = set()
    for i, (corpus, corpus_utts) in enumerate(sorted(utts.items())):
        dialogues = sorted({u.dialogue_id or u.utt_id for u in corpus_utts})
        n = max(1, int(round(share * len(dialogues)))) if share > 0 else 0
        picked = {dialogues[j] for j in np.random.default_rng([seed, i]).permutation(len(dialogues))[:n]}
        chosen |= {qualified(corpus, u.utt_id) for u in corpus_utts if (u.dialogue_id or u.utt_id) in picked}
    return chosen


def check_cross_fold(fold: Mapping[str, Any], target: str) -> None:
    """Source and target never share an utterance; no part repeats an id; the test part is the target's alone."""
    seen: dict[str, str] = {}
    for part in ("train", "val", "test", "adaptation"):
        for utt_id in fold[part]:
            if utt_id in seen:
                raise CrossCorpusError(f"{fold['name']}: {utt_id!r} is in both {seen[utt_id]} and {part}")
            seen[utt_id] = part
    for part in ("train", "val"):
        wrong = [i for i in fold[part] if split_qualified(i)[0] == target]
        if wrong:
            raise CrossCorpusError(f"{fold['name']}: target utterance {wrong[0]!r} in the source {part} part")
    for part in ("test", "adaptation"):
        wrong = [i for i in fold[part] if split_qualified(i)[0] != target]
        if wrong:
            raise CrossCorpusError(f"{fold['name']}: source utterance {wrong[0]!r} in the target {part} part")
    if not fold["in_corpus"]["train"]:
        raise CrossCorpusError(f"{fold['name']}: the in-corpus upper bound has no training utterance (the target's "
                               "test and validation groups hold every labelled one)",
                               fix="raise target_folds to at least 3")
    in_corpus = set(fold["in_corpus"]["train"]) | set(fold["in_corpus"]["val"])
    if in_corpus & set(fold["test"]):
        raise CrossCorpusError(f"{fold['name']}: the in-corpus training parts hold test utterances")


def build_cross_corpus(name: str, config: Mapping[str, Any], manifests: Mapping[str, Sequence[Utterance]],
                       classes: Mapping[str, Sequence[str]], seed: int) -> dict[str, Any]:
    """The cross-corpus split file. config: sources, target, classes, mapping, target_folds, source_val, in_corpus_val.
    manifests / classes: per corpus, its utterances and its class list."""
    sources, target, shared = list(config["sources"]), str(config["target"]), list(config["classes"])
    if not sources or target in sources or len(set(sources)) != len(sources):
        raise CrossCorpusError(f"cross_corpus.{name}: sources {sources} must be distinct corpora, none of them the "
                               f"target {target!r}")
    for corpus in [*sources, target]:
        if corpus not in config["mapping"]:
            raise CrossCorpusError(f"cross_corpus.{name}.mapping: no mapping for corpus {corpus!r}",
                                   fix=f"map its labels {list(classes[corpus])} onto {shared}")
        check_mapping(name, corpus, config["mapping"][corpus], classes[corpus], shared)
    labels: dict[str, str | None] = {}
    dropped: dict[str, dict[str, int]] = {}
    for corpus in [*sources, target]:
        labels_c, dropped[corpus] = map_labels(name, corpus, manifests[corpus], config["mapping"][corpus], shared)
        labels.update(labels_c)
    kept = {c: [u for u in manifests[c] if qualified(c, u.utt_id) in labels] for c in [*sources, target]}
    val = _source_val({c: kept[c] for c in sources}, float(config["source_val"]), seed)
    source_ids = [qualified(c, u.utt_id) for c in sources for u in kept[c] if labels[qualified(c, u.utt_id)]]
    folds = []
    groups = _speaker_groups(kept[target], config["target_folds"], name, target)
    for i, group in enumerate(groups):
        next_group = groups[(i + 1) % len(groups)]
        ids = {part: [] for part in ("test", "adaptation", "in_train", "in_val")}
        for u in kept[target]:
            q = qualified(target, u.utt_id)
            if u.speaker in group:
                if labels[q] is not None:
                    ids["test"].append(q)
                continue
            ids["adaptation"].append(q)
            if labels[q] is not None:
                ids["in_val" if u.speaker in next_group else "in_train"].append(q)
        fold = {"name": f"fold{i + 1:02d}", "test_group": sorted(group),
                "train": sorted(q for q in source_ids if q not in val),
                "val": sorted(q for q in source_ids if q in val), "test": sorted(ids["test"]),
                "adaptation": sorted(ids["adaptation"]),
                "in_corpus": {"train": sorted(ids["in_train"]), "val": sorted(ids["in_val"])}}
        check_cross_fold(fold, target)
        folds.append(fold)
    return {"format": CROSS_CORPUS_FORMAT, "kind": "cross_corpus", "name": name, "seed": seed,
            "sources": sources, "target": target, "classes": shared,
            "cultures": {c: i for i, c in enumerate([*sources, target])},
            "mapping": {c: dict(config["mapping"][c]) for c in [*sources, target]}, "dropped": dropped,
            "labels": {q: lbl for q, lbl in sorted(labels.items()) if lbl is not None}, "folds": folds}


def cross_protocols(params: Mapping[str, Any]) -> dict[str, Any]:
    """The `cross_corpus` section: protocol name -> its settings (empty when there is none)."""
    return dict(params.get("cross_corpus") or {})


def cross_corpora(config: Mapping[str, Any]) -> list[str]:
    """The corpora a protocol reads: its sources in order, then its target."""
    return [*config["sources"], config["target"]]


def split_cross_corpus(params: Mapping[str, Any], name: str) -> Path:
    """The split stage of a cross-corpus protocol: every named corpus's manifest -> `splits/<name>.json`."""
    import logging

    from pipeline.layout import corpus_info_path, manifest_path, split_path
    from pipeline.manifest import CorpusInfo, read_manifest
    from pipeline.params import lookup
    from pipeline.splits import write_splits

    config = cross_protocols(params)[name]
    manifests: dict[str, list[Utterance]] = {}
    classes: dict[str, list[str]] = {}
    for corpus in cross_corpora(config):
        info = CorpusInfo.read(corpus_info_path(corpus))
        classes[corpus] = list(info.classes)
        manifests[corpus] = read_manifest(manifest_path(corpus), info.classes)
    split = build_cross_corpus(name, config, manifests, classes, int(lookup(params, "splits.seed", 0)))
    out = split_path(name)
    write_splits(out, split)
    sizes = [(len(f["train"]), len(f["val"]), len(f["test"]), len(f["adaptation"])) for f in split["folds"]]
    logging.getLogger(__name__).info(
        "split %s: %s -> %s, %d folds, train/val/test/adaptation %s; dropped %s", name, split["sources"],
        split["target"], len(sizes), sizes, split["dropped"])
    return out
