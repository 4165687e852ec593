"""Evaluation splits: folds, the missing-modality condition table, unlabelled pools (DESIGN.md, "Split file").

A corpus can carry several named protocols (params `corpora.<name>.splits`), because the literature evaluates the
same corpus two ways: MMIN and SSMM use leave-one-speaker-out folds on IEMOCAP, MMGCN holds out session 5 with
whole dialogues. Each model's params name the protocol it trains on. Protocol kinds:

- `speaker_folds`: one fold per test speaker; validation = the test speaker's session partner (MMIN's IEMOCAP 10
  folds, MSP-IMPROV 12) or the next speaker in order. With `folds: k`, the speakers (in id order) are cut into k
  contiguous groups instead, one fold per group, validation = the next group (CREMA-D's 91 actors, RAVDESS's 24).
- `session_folds`: leave-one-session-out; validation = the next session, or a share of the training dialogues.
- `holdout`: the test part is a list of sessions (IEMOCAP 1-4 vs 5, as MMGCN) or the corpus's official `split`
  field (MELD train/dev/test); validation = the official dev split, or a seeded share of training dialogues.
- `random_speakers`: seeded, speaker-disjoint random splits, repeated `folds` times.

Labelled utterances go to train/val/test; utterances without a label form the fold's unlabelled pool (only those of
training speakers or dialogues, so nothing of the test part leaks in). For each labelled fraction, a seeded
stratified subset of the training labels is hidden (the semi-supervised sweep). Every fold is checked when written.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.condition_names import (
    CONDITIONS,
    MODALITIES,
    conditions_over,
    full_condition,
    missing_conditions,
)
from pipeline.errors import AffectflowError
from pipeline.manifest import Utterance
from pipeline.params import ConfigError

log = logging.getLogger(__name__)

SPLIT_FORMAT = 1
KINDS = ("speaker_folds", "session_folds", "holdout", "random_speakers")


class SplitError(AffectflowError, ValueError):
    """A split that breaks one of its promises (overlap, speaker leak, unknown id, fraction off)."""


@dataclass
class Fold:
    name: str
    train: list[str]
    val: list[str]
    test: list[str]
    unlabelled: list[str]
    test_group: list[str]
    val_group: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "test_group": self.test_group, "val_group": self.val_group, "train": self.train,
                "val": self.val, "test": self.test, "unlabelled": self.unlabelled}


def _rng(seed: int, *keys: int | str) -> np.random.Generator:
    extra = [int.from_bytes(str(k).encode()[:8].ljust(8, b"\0"), "little") if isinstance(k, str) else int(k)
             for k in keys]
    return np.random.default_rng([seed, *extra])


def _dialogue(u: Utterance) -> str:
    return u.dialogue_id or u.utt_id


def _sample_dialogues(utts: Sequence[Utterance], share: float, seed: int, key: str) -> set[str]:
    dialogues = sorted({_dialogue(u) for u in utts})
    n = max(1, int(round(share * len(dialogues)))) if dialogues and share > 0 else 0
    order = _rng(seed, key).permutation(len(dialogues))
    return {dialogues[i] for i in order[:n]}


def _make_fold(name: str, utts: Sequence[Utterance], is_test, is_val, test_group: list[str],
               val_group: list[str]) -> Fold:
    train, val, test, pool = [], [], [], []
    for u in utts:
        if is_test(u):
            if u.label is not None:
                test.append(u.utt_id)
        elif is_val(u):
            if u.label is not None:
                val.append(u.utt_id)
        elif u.label is not None:
            train.append(u.utt_id)
        else:
            pool.append(u.utt_id)
    return Fold(name, train, val, test, pool, test_group, val_group)


def speaker_groups(utts: Sequence[Utterance], k: int, rule: str) -> list[Fold]:
    """k speaker-disjoint folds: the sorted speakers cut into k contiguous groups; validation = the next group."""
    speakers = sorted({u.speaker for u in utts})
    if not isinstance(k, int) or isinstance(k, bool) or not 3 <= k <= len(speakers):
        raise ConfigError(f"speaker_folds: folds must be a whole number from 3 to the {len(speakers)} speakers, "
                          f"got {k!r}")
    if rule != "next":
        raise ConfigError(f"speaker_folds with folds: {k} takes val: next (the next group), got {rule!r}")
    groups = [[str(s) for s in part] for part in np.array_split(np.array(speakers, dtype=object), k)]
    folds = []
    for i, group in enumerate(groups):
        val = groups[(i + 1) % k]
        folds.append(_make_fold(f"fold{i + 1:02d}", utts, lambda u, t=set(group): u.speaker in t,
                                lambda u, v=set(val): u.speaker in v, group, val))
    return folds


def speaker_folds(utts: Sequence[Utterance], config: dict[str, Any], seed: int) -> list[Fold]:
    speakers = sorted({u.speaker for u in utts})
    if len(speakers) < 3:
        raise ConfigError(f"speaker_folds needs at least 3 speakers, the corpus has {len(speakers)}")
    if config.get("folds") is not None:
        return speaker_groups(utts, config["folds"], config.get("val", "next"))
    by_session: dict[str, list[str]] = defaultdict(list)
    for spk in speakers:
        sessions = {u.session for u in utts if u.speaker == spk}
        by_session[sorted(sessions)[0]].append(spk)
    rule = config.get("val", "partner")
    folds = []
    for i, test_spk in enumerate(speakers):
        if rule == "partner":
            session = next(s for s, members in by_session.items() if test_spk in members)
            partners = [s for s in by_session[session] if s != test_spk]
            if not partners:
                raise ConfigError(f"speaker {test_spk} has no session partner for val: partner; use val: next")
            val_spk = partners[0]
        elif rule == "next":
            val_spk = speakers[(i + 1) % len(speakers)]
        else:
            raise ConfigError(f"speaker_folds: val must be 'partner' or 'next', got {rule!r}")
        folds.append(_make_fold(f"fold{i + 1:02d}", utts, lambda u, t=test_spk: u.speaker == t,
                                lambda u, v=val_spk: u.speaker == v, [test_spk], [val_spk]))
    return folds


def session_folds(utts: Sequence[Utterance], config: dict[str, Any], seed: int) -> list[Fold]:
    sessions = sorted({u.session for u in utts})
    if len(sessions) < 2:
        raise ConfigError(f"session_folds needs at least 2 sessions, the corpus has {len(sessions)}")
    rule = config.get("val", "next")
    folds = []
    for i, test_ses in enumerate(sessions):
        if rule == "next":
            if len(sessions) < 3:
                raise ConfigError("session_folds with val: next needs at least 3 sessions; use val: 0.1")
            val_ses = sessions[(i + 1) % len(sessions)]
            is_val, val_group = (lambda u, v=val_ses: u.session == v), [val_ses]
        else:
            share = float(rule)
            rest = [u for u in utts if u.session != test_ses]
            chosen = _sample_dialogues(rest, share, seed, f"val-{test_ses}")
            is_val, val_group = (lambda u, c=chosen: _dialogue(u) in c), sorted(chosen)
        folds.append(_make_fold(f"fold{i + 1:02d}", utts, lambda u, t=test_ses: u.session == t, is_val,
                                [test_ses], val_group))
    return folds


def holdout(utts: Sequence[Utterance], config: dict[str, Any], seed: int) -> list[Fold]:
    test_sessions = config.get("test_sessions")
    if test_sessions:
        test_set = set(test_sessions)
        unknown = test_set - {u.session for u in utts}
        if unknown:
            raise ConfigError(f"holdout: test_sessions {sorted(unknown)} are not sessions of the corpus")
        is_test, test_group = (lambda u: u.session in test_set), sorted(test_set)
    else:
        names = config.get("official", {"train": "train", "val": "dev", "test": "test"})
        if not any(u.split == names["test"] for u in utts):
            raise ConfigError(f"holdout: no utterance has split {names['test']!r}; give test_sessions instead")
        is_test, test_group = (lambda u: u.split == names["test"]), [names["test"]]
    val_rule = config.get("val", "official" if not test_sessions else 0.1)
    if val_rule == "official":
        val_name = config.get("official", {}).get("val", "dev")
        is_val, val_group = (lambda u: u.split == val_name), [val_name]
    else:
        rest = [u for u in utts if not is_test(u)]
        chosen = _sample_dialogues(rest, float(val_rule), seed, "holdout-val")
        is_val, val_group = (lambda u: _dialogue(u) in chosen and not is_test(u)), sorted(chosen)
    return [_make_fold("fold01", utts, is_test, is_val, test_group, val_group)]


def random_speakers(utts: Sequence[Utterance], config: dict[str, Any], seed: int) -> list[Fold]:
    speakers = sorted({u.speaker for u in utts})
    n_test = max(1, int(round(float(config.get("test_share", 0.2)) * len(speakers))))
    n_val = max(1, int(round(float(config.get("val_share", 0.1)) * len(speakers))))
    if n_test + n_val >= len(speakers):
        raise ConfigError(f"random_speakers: {len(speakers)} speakers cannot give {n_test} test + {n_val} val "
                          "speakers and leave any for training")
    folds = []
    for k in range(int(config.get("folds", 5))):
        order = [speakers[i] for i in _rng(seed, "random", k).permutation(len(speakers))]
        test_set, val_set = set(order[:n_test]), set(order[n_test:n_test + n_val])
        folds.append(_make_fold(f"fold{k + 1:02d}", utts, lambda u, t=test_set: u.speaker in t,
                                lambda u, v=val_set: u.speaker in v, sorted(test_set), sorted(val_set)))
    return folds


BUILDERS = {"speaker_folds": speaker_folds, "session_folds": session_folds, "holdout": holdout,
            "random_speakers": random_speakers}


def hide_labels(train: Sequence[Utterance], fraction: float, seed: int, key: str) -> list[str]:
    """Ids whose labels are hidden so that, per class, round(fraction * n_c) labels stay (at least one)."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"labelled fractions must lie in (0, 1], got {fraction}")
    by_class: dict[str, list[str]] = defaultdict(list)
    for u in train:
        by_class[u.label].append(u.utt_id)
    hidden = []
    for label in sorted(by_class):
        ids = sorted(by_class[label])
        keep = min(len(ids), max(1, int(round(fraction * len(ids)))))
        order = _rng(seed, key, label).permutation(len(ids))
        hidden.extend(ids[i] for i in order[keep:])
    return sorted(hidden)


def check_fold(fold: Fold, by_id: dict[str, Utterance], kind: str) -> None:
    parts = {"train": fold.train, "val": fold.val, "test": fold.test, "unlabelled": fold.unlabelled}
    seen: dict[str, str] = {}
    for part, ids in parts.items():
        for utt_id in ids:
            if utt_id not in by_id:
                raise SplitError(f"{fold.name}: {part} id {utt_id!r} is not in the manifest")
            if utt_id in seen:
                raise SplitError(f"{fold.name}: {utt_id!r} is in both {seen[utt_id]} and {part}")
            seen[utt_id] = part
    if not fold.train or not fold.test:
        raise SplitError(f"{fold.name}: empty train ({len(fold.train)}) or test ({len(fold.test)}) part")
    if kind in ("speaker_folds", "random_speakers"):
        speakers = {part: {by_id[i].speaker for i in ids} for part, ids in parts.items()}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test"), ("unlabelled", "test"),
                     ("unlabelled", "val")):
            shared = speakers[a] & speakers[b]
            if shared:
                raise SplitError(f"{fold.name}: speakers {sorted(shared)} are in both {a} and {b}")


def check_hidden(fold: Fold, hidden: Sequence[str], fraction: float, by_id: dict[str, Utterance]) -> None:
    hidden_set = set(hidden)
    if not hidden_set <= set(fold.train):
        raise SplitError(f"{fold.name}: hidden labels outside the training part")
    totals = Counter(by_id[i].label for i in fold.train)
    kept = Counter(by_id[i].label for i in fold.train if i not in hidden_set)
    for label, total in totals.items():
        if abs(kept[label] - fraction * total) > 1 and not (kept[label] == 1 and fraction * total < 1):
            raise SplitError(f"{fold.name}: class {label!r} keeps {kept[label]} of {total} labels, "
                             f"requested {fraction}")


def build_protocol(utts: Sequence[Utterance], config: dict[str, Any], fractions: Sequence[float],
                   seed: int) -> dict[str, Any]:
    kind = config.get("protocol")
    if kind not in BUILDERS:
        raise ConfigError(f"split protocol must be one of {KINDS}, got {kind!r}")
    by_id = {u.utt_id: u for u in utts}
    folds = BUILDERS[kind](utts, config, seed)
    hidden: dict[str, dict[str, list[str]]] = {}
    for fold in folds:
        check_fold(fold, by_id, kind)
        for fraction in fractions:
            ids = hide_labels([by_id[i] for i in fold.train], float(fraction), seed, fold.name)
            check_hidden(fold, ids, float(fraction), by_id)
            hidden.setdefault(_fraction_key(fraction), {})[fold.name] = ids
    return {"kind": kind, "config": config, "folds": [f.to_json() for f in folds], "hidden_labels": hidden}


def _fraction_key(fraction: float) -> str:
    return f"{float(fraction):g}"


def fitting_protocols(utts: Sequence[Utterance], protocols: dict[str, Any], optional: set[str],
                      fractions: Sequence[float], seed: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The protocols that can be built on this corpus, and why each `optional` one that cannot was left out.

    An adapter's standard protocols assume the whole release (IEMOCAP's Session 5 holdout needs Session 5): on a
    part of it (`sessions: [1, 2]`) or a tiny corpus, those that do not fit are left out with a warning and listed
    in the split file; a protocol written in params must build, or the stage fails naming it.
    """
    kept, skipped = {}, {}
    for name, config in protocols.items():
        if name in optional:
            try:
                build_protocol(utts, dict(config), fractions, seed)
            except (ConfigError, SplitError) as err:
                skipped[name] = str(err)
                log.warning("split: the adapter's protocol %r does not fit this corpus and is left out: %s", name,
                            err)
                continue
        kept[name] = config
    if not kept:
        raise ConfigError(f"no protocol fits this corpus ({skipped}); give one under corpora.<corpus>.splits")
    return kept, skipped


def build_splits(corpus: str, utts: Sequence[Utterance], classes: Sequence[str], protocols: dict[str, Any],
                 fractions: Sequence[float], seed: int,
                 modalities: Sequence[str] = MODALITIES) -> dict[str, Any]:
    """The whole split file: every protocol of the corpus, the condition table over the corpus's modalities (all
    seven conditions over three; over audio alone only the full condition "azz"), the pool, the seed."""
    if not protocols:
        raise ConfigError(f"corpora.{corpus}.splits: no protocol configured")
    return {
        "format": SPLIT_FORMAT, "corpus": corpus, "seed": seed, "classes": list(classes),
        "labelled_fractions": [float(f) for f in fractions],
        "conditions": {name: list(CONDITIONS[name]) for name in conditions_over(modalities)},
        "missing_conditions": list(missing_conditions(modalities)), "full_condition": full_condition(modalities),
        "unlabelled": sorted(u.utt_id for u in utts if u.label is None),
        "protocols": {name: build_protocol(utts, dict(config), fractions, seed) for name, config in protocols.items()},
    }


def write_splits(path: Path, splits: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(splits, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def summarise(splits: dict[str, Any]) -> str:
    lines = []
    for name, proto in splits["protocols"].items():
        sizes = [(len(f["train"]), len(f["val"]), len(f["test"]), len(f["unlabelled"])) for f in proto["folds"]]
        mean = [int(round(sum(s[i] for s in sizes) / len(sizes))) for i in range(4)]
        lines.append(f"{name} ({proto['kind']}): {len(sizes)} folds, mean train/val/test/pool "
                     f"{mean[0]}/{mean[1]}/{mean[2]}/{mean[3]}")
    return "; ".join(lines)


def split_corpus(params: dict[str, Any], corpus: str) -> Path:
    """The split stage: `data/<corpus>/manifest.jsonl` -> `splits/<corpus>.json`; for a `cross_corpus` protocol's
    name, every corpus it names -> `splits/<name>.json` (pipeline/cross_corpus.py)."""
    from pipeline import corpora
    from pipeline.cross_corpus import cross_protocols, split_cross_corpus

    if corpus in cross_protocols(params):
        return split_cross_corpus(params, corpus)
    from pipeline.layout import corpus_info_path, manifest_path, split_path
    from pipeline.manifest import CorpusInfo, read_manifest
    from pipeline.modalities import corpus_modalities
    from pipeline.params import lookup

    overrides = lookup(params, f"corpora.{corpus}.splits", None)
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"corpora.{corpus}.splits must map protocol names to their settings (or null to drop an "
                          "adapter's protocol)")
    adapter_name = lookup(params, f"corpora.{corpus}.adapter")
    try:
        module = corpora.adapter(adapter_name)
    except corpora.UnknownAdapterError as err:
        raise ConfigError(f"corpora.{corpus}.adapter: {err}") from None
    protocols = corpora.protocols(module, overrides)
    seed = int(lookup(params, "splits.seed", 0))
    fractions = [float(f) for f in lookup(params, "splits.labelled_fractions", [1.0])]
    info = CorpusInfo.read(corpus_info_path(corpus))
    utts = read_manifest(manifest_path(corpus), info.classes)
    protocols, skipped = fitting_protocols(utts, protocols, set(protocols) - set(overrides or {}), fractions, seed)
    splits = build_splits(corpus, utts, info.classes, protocols, fractions, seed, corpus_modalities(params, corpus))
    out = split_path(corpus)
    if skipped:
        splits["skipped_protocols"] = skipped
    write_splits(out, splits)
    log.info("split %s: %s; %d unlabelled utterances; fractions %s", corpus, summarise(splits),
             len(splits["unlabelled"]), fractions)
    return out


def load_splits(path: str | Path) -> dict[str, Any]:
    splits = json.loads(Path(path).read_text())
    if splits.get("format") != SPLIT_FORMAT:
        raise SplitError(f"{path}: split format {splits.get('format')!r}, expected {SPLIT_FORMAT}; re-run split")
    return splits


def fold_ids(splits: dict[str, Any], protocol: str, fold: str | int) -> dict[str, list[str]]:
    """The train/val/test/unlabelled ids of one fold (by name or index)."""
    if protocol not in splits["protocols"]:
        raise ConfigError(f"split protocol {protocol!r} is not in the split file; it has "
                          f"{sorted(splits['protocols'])}")
    folds = splits["protocols"][protocol]["folds"]
    chosen = folds[fold] if isinstance(fold, int) else next((f for f in folds if f["name"] == fold), None)
    if chosen is None:
        raise ConfigError(f"protocol {protocol!r} has no fold {fold!r}")
    return {k: chosen[k] for k in ("train", "val", "test", "unlabelled")}
