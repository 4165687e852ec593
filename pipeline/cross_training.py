"""The train stage on a cross-corpus protocol (`affectflow train <model> <protocol>`, `cross_models`): the stores of
every corpus the protocol names -> the culture family (models/culture_adv.py) per fold and seed ->
`metrics/<model>/<protocol>.json` and `checkpoints/<model>/<protocol>/` (weights, runs.json, the first run's
embeddings for the report's t-SNE).

Each modality is read from the same extractor's store in every corpus (`train.features`), checked to be the same
extractor with the same width; utterance ids are qualified `<corpus>/<utt_id>` and labels are the shared classes
the split file maps them onto. The target's adaptation pool reaches the model without labels (-1 here, 0 inside
the family, never in the loss); culture_in_corpus trains on the fold's in-corpus parts of the target instead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.data import MODALITIES, UNLABELLED, Sequences, UtteranceSet, UtteranceView
from models.metrics import mean_std
from models.trainer import FoldOutcome, pick_device
from pipeline.cross_corpus import cross_corpora, cross_protocols, qualified, split_qualified
from pipeline.errors import AffectflowError
from pipeline.layout import checkpoint_dir, corpus_info_path, manifest_path, metrics_path, split_path, store_path
from pipeline.manifest import CorpusInfo, read_manifest
from pipeline.params import ConfigError, lookup, merged
from pipeline.run_pool import run_all
from pipeline.run_record import conditions_summary, metrics_json, run_record, runs_json
from pipeline.splits import load_splits
from pipeline.stage_outputs import SignalGuard, StagedOutputs, torch_bytes
from pipeline.store import FeatureStore

log = logging.getLogger(__name__)

PIPELINE_KEYS = ("family", "protocol", "features", "folds", "seeds", "device", "threads", "workers", "init_from",
                 "labelled_fractions", "use_unlabelled", "allow_absent_modalities", "modalities")


class CrossStoreError(AffectflowError):
    """Two corpora's stores of one modality that a model cannot read together (another extractor, another width)."""


def cross_model_config(params: dict[str, Any], model: str, protocol: str) -> dict[str, Any]:
    """`train`, the protocol's `train`, `models.<model>` and the protocol's `train.models.<model>`, merged."""
    base = lookup(params, f"models.{model}")
    if not isinstance(base, dict) or base.get("family") != "culture":
        raise ConfigError(f"models.{model} is not of the culture family; a cross-corpus protocol trains only "
                          "culture models (cross_models)", f"models.{model}.family", "family: culture")
    run = dict(lookup(params, f"cross_corpus.{protocol}.train", {}) or {})
    overrides = dict(run.pop("models", {}) or {})
    config = merged(merged(merged(dict(lookup(params, "train", {}) or {}), run), base), overrides.get(model, {}) or {})
    config["features"] = {**(lookup(params, "train.features", {}) or {}), **(base.get("features") or {})}
    return config


def open_stores(corpora: Sequence[str], features: Mapping[str, str]) -> dict[str, dict[str, FeatureStore]]:
    """corpus -> modality -> its store; every modality's stores hold the same extractor at the same width."""
    stores = {c: {m: FeatureStore(store_path(c, x)) for m, x in features.items()} for c in corpora}
    first = corpora[0]
    for corpus in corpora[1:]:
        for modality in features:
            a, b = stores[first][modality], stores[corpus][modality]
            if (a.attrs.get("extractor"), a.dim) != (b.attrs.get("extractor"), b.dim):
                raise CrossStoreError(
                    f"the {modality} stores differ: {a.path} holds {a.attrs.get('extractor')} ({a.dim}-d), "
                    f"{b.path} holds {b.attrs.get('extractor')} ({b.dim}-d)", f"{a.path}, {b.path}",
                    "extract every corpus of the protocol with the same extractor and settings (train.features)")
    return stores


def _pad_cat(parts: Sequence[Sequences]) -> Sequences:
    longest = max(p.values.shape[1] for p in parts)
    values = [torch.nn.functional.pad(p.values, (0, 0, 0, longest - p.values.shape[1])) for p in parts]
    return Sequences(torch.cat(values), torch.cat([p.lengths for p in parts]))


def concat_sets(sets: Sequence[UtteranceSet]) -> UtteranceSet:
    """One set of several corpora's sets (each modality zero-padded to the longest)."""
    seqs = {m: _pad_cat([getattr(s, m) for s in sets]) if getattr(sets[0], m) is not None else None
            for m in MODALITIES}
    return UtteranceSet([i for s in sets for i in s.utt_ids], seqs["audio"], seqs["visual"], seqs["text"],
                        torch.cat([s.labels for s in sets]), [x for s in sets for x in s.speakers],
                        [x for s in sets for x in s.dialogue_ids], [x for s in sets for x in s.turns])


def load_cross(split: Mapping[str, Any], stores: Mapping[str, Mapping[str, FeatureStore]],
               caps: Mapping[str, int | None]) -> UtteranceSet:
    """Every utterance of the split's corpora that the split names, qualified ids, shared-class labels (-1 where
    it has none: unlabelled, or a target utterance offered only for adaptation)."""
    from pipeline.train import load_utterances

    named = {i for f in split["folds"] for part in ("train", "val", "test", "adaptation") for i in f[part]}
    named |= {i for f in split["folds"] for part in ("train", "val") for i in f["in_corpus"][part]}
    sets = []
    for corpus in split["cultures"]:
        info = CorpusInfo.read(corpus_info_path(corpus))
        utts = [u for u in read_manifest(manifest_path(corpus), info.classes) if qualified(corpus, u.utt_id) in named]
        data = load_utterances(utts, info.classes, dict(stores[corpus]), dict(caps))
        data.utt_ids = [qualified(corpus, i) for i in data.utt_ids]
        index = {c: k for k, c in enumerate(split["classes"])}
        data.labels = torch.tensor([index[split["labels"][i]] if i in split["labels"] else UNLABELLED
                                    for i in data.utt_ids], dtype=torch.long)
        sets.append(data)
    return concat_sets(sets)


def fold_parts(data: UtteranceSet, fold: Mapping[str, Any], variant: str) -> dict[str, Any]:
    """The family's arguments for one fold: views of the loaded set (the adaptation pool with its labels -1)."""
    position = {u: k for k, u in enumerate(data.utt_ids)}

    def view(ids: Sequence[str]) -> UtteranceView:
        return data.view([position[i] for i in ids])

    if variant == "in_corpus":
        return {"train": view(fold["in_corpus"]["train"]), "val": view(fold["in_corpus"]["val"]),
                "test": view(fold["test"])}
    pool = view(fold["adaptation"])
    return {"train": view(fold["train"]), "val": view(fold["val"]), "test": view(fold["test"]),
            "adaptation": UtteranceView(pool.source, pool.rows, torch.full_like(pool.labels, UNLABELLED))}


def _discriminator_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The culture discriminator's accuracy over the runs (selected epoch, and last epoch's training batches)."""
    accuracy = [r["extras"]["culture_accuracy"] for r in runs if "culture_accuracy" in r["extras"]]
    if not accuracy:
        return {}
    return {"culture_accuracy": mean_std(accuracy),
            "culture_accuracy_last_epoch": mean_std([r["extras"]["culture_accuracy_last_epoch"] for r in runs])}


@dataclass
class CrossJob:
    """One run: a fold of the split file (utterance ids) and a seed."""

    fold: Mapping[str, Any]
    seed: int


def run_cross_job(data: UtteranceSet, job: CrossJob, variant: str, family_config: dict[str, Any], device: str,
                  threads: int, cultures: Mapping[str, int], target: str) -> FoldOutcome:
    """Train and evaluate one run of a culture model; everything it needs is in `data` and `job` (any process)."""
    from models import culture_adv

    if threads:
        torch.set_num_threads(threads)
    parts = fold_parts(data, job.fold, variant)
    train_cultures = torch.tensor([cultures[split_qualified(i)[0]] for i in job.fold["train"]])
    return culture_adv.train_and_evaluate(
        parts["train"], parts["val"], parts["test"], family_config, seed=job.seed, device=torch.device(device),
        adaptation=parts.get("adaptation"), train_cultures=train_cultures, target_culture=int(cultures[target]),
        n_cultures=len(cultures))


def train_cross(params: dict[str, Any], model: str, protocol: str, guard: SignalGuard | None = None
                ) -> dict[str, Any]:
    """Every selected fold and seed of one culture model on one cross-corpus protocol, in `workers` processes on
    the CPU (the same outcomes as one). `guard`: the train stage's, which turns SIGINT/SIGTERM into a stop."""
    from pipeline.train import select_folds

    guard = guard or SignalGuard()
    config = cross_model_config(params, model, protocol)
    split = load_splits(split_path(protocol))
    corpora = cross_corpora(cross_protocols(params)[protocol])
    stores = open_stores(corpora, config["features"])
    caps = {m: (config.get("frames") or {}).get(m) for m in config["features"]}
    data = load_cross(split, stores, caps)
    folds = select_folds(split["folds"], config.get("folds", "all"))
    seeds = [int(s) for s in config.get("seeds", [0])]
    device = pick_device(str(config.get("device", "auto")))
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    workers = int(config.get("workers", 1) or 1) if device.type == "cpu" else 1  # one process drives a GPU
    family_config = {**{k: v for k, v in config.items() if k not in PIPELINE_KEYS}, "n_classes": len(split["classes"])}
    run = functools.partial(run_cross_job, variant=config["variant"], family_config=family_config, device=str(device),
                            threads=int(config.get("threads") or 0), cultures=split["cultures"],
                            target=split["target"])
    jobs = [CrossJob(fold, seed) for fold in folds for seed in seeds]
    outputs = StagedOutputs(checkpoint_dir(model, protocol), [metrics_path(model, protocol)])
    outputs.check_writable()
    outcomes, runs = [], []

    def record(job: CrossJob, outcome: FoldOutcome) -> None:
        outputs.write_bytes(outputs.staging / f"{job.fold['name']}_seed{job.seed}.pt", torch_bytes(outcome.state))
        arrays = {k: v for k, v in outcome.extras.items() if isinstance(v, np.ndarray)}
        if arrays and not runs:
            outputs.write_bytes(outputs.staging / "extras.pt",
                                torch_bytes({k: torch.from_numpy(v) for k, v in arrays.items()}))
        outcomes.append(outcome)
        runs.append(run_record(job.fold["name"], job.seed, outcome))

    outputs.begin()
    try:
        run_all(run, data, jobs, workers, guard, f"train {model} on {protocol}", record)
        metrics = {"model": model, "family": "culture", "variant": config["variant"], "corpus": protocol,
                   "protocol": "cross_corpus", "sources": split["sources"], "target": split["target"],
                   "folds": len(folds), "fold_names": [f["name"] for f in folds], "seeds": seeds,
                   "conditions": conditions_summary(outcomes), **_discriminator_summary(runs)}
        outputs.write_text(metrics_path(model, protocol), metrics_json(metrics))
        outputs.write_text(outputs.staging / "runs.json", runs_json(model, protocol, config, split["classes"], runs))
        outputs.commit()
    except BaseException:
        with guard.shielded():  # a second Ctrl-C does not cut the cleanup short
            outputs.discard()
        raise
    log.info("trained %s on %s: %d runs", model, protocol, len(runs))
    return metrics
