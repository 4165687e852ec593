"""The train stage: feature stores + split file -> a model family's `train_and_evaluate` per fold and seed ->
`metrics/<model>/<corpus>.json`, `checkpoints/<model>/<corpus>/`, `plots/curves/<model>/<corpus>.csv`.

This module opens the files and hands tensors to `models/`; the models never see a path. A model entry in
params.yaml names its family, the split protocol it trains on and its hyper-parameters (the papers' defaults); the
stores it reads are those of the modalities it trains on (`pipeline.modalities.model_modalities`: the corpus's
modalities, intersected with the model's own `modalities` or `features`), and no other store is opened;
`corpora.<corpus>.train` may override what CPU time demands (folds, seeds, epochs) for one corpus, which is how the
demo stays small while the defaults stay the paper's.
"""

from __future__ import annotations

import csv
import ctypes
import functools
import importlib
import io
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.condition_names import full_condition
from models.data import MODALITIES, UNLABELLED, Sequences, UtteranceSet
from models.trainer import FoldOutcome, pick_device
from pipeline.errors import AffectflowError
from pipeline.layout import (
    checkpoint_dir,
    corpus_info_path,
    curves_path,
    live_dir,
    manifest_path,
    metrics_path,
    split_path,
    store_path,
)
from pipeline.manifest import CorpusInfo, Utterance, read_manifest
from pipeline.modalities import MODALITY_LETTERS, model_features, model_modalities
from pipeline.params import ConfigError, lookup, merged
from pipeline.run_pool import run_all
from pipeline.run_record import conditions_summary, metrics_json, run_record, runs_json
from pipeline.splits import load_splits
from pipeline.stage_outputs import (
    Interrupted,
    OutputError,
    SignalGuard,
    StagedOutputs,
    Stopped,
    os_reason,
    torch_bytes,
)
from pipeline.store import FeatureStore
from pipeline.torch_files import RESTORE, CheckpointError, read_torch_file
from pipeline.tracking import log_runs

log = logging.getLogger(__name__)

FAMILIES = {"utt_fusion": "models.utt_fusion", "mmin": "models.mmin", "mmgcn": "models.mmgcn",
            "ssmm": "models.ssmm"}
# keys the stage reads itself; the family's train_and_evaluate gets the rest (plus n_classes)
PIPELINE_KEYS = ("family", "protocol", "features", "folds", "seeds", "device", "threads", "workers", "init_from",
                 "labelled_fractions", "use_unlabelled", "allow_absent_modalities")


def model_config(params: dict[str, Any], model: str, corpus: str) -> dict[str, Any]:
    """The model's params entry with the run settings (`train`) and the corpus's overrides merged in."""
    base = lookup(params, f"models.{model}")
    if not isinstance(base, dict) or "family" not in base:
        raise ConfigError(f"models.{model} must be a mapping with a 'family' key")
    corpus_train = dict(lookup(params, f"corpora.{corpus}.train", {}) or {})
    overrides = dict(corpus_train.pop("models", {}) or {})
    run = merged(dict(lookup(params, "train", {}) or {}), corpus_train)
    config = merged(merged(run, base), overrides.get(model, {}))
    config["features"] = model_features(params, model, corpus)  # a model's own features replace train.features
    if config["family"] not in FAMILIES:
        raise ConfigError(f"models.{model}.family must be one of {sorted(FAMILIES)}, got {config['family']!r}")
    for key in ("protocol", "features"):
        if key not in config:
            raise ConfigError(f"models.{model}: '{key}' is not set (here or under train:)")
    return config


READ_BLOCK_BYTES = 32 << 20  # a store is read in runs of consecutive rows up to this size


def release_freed_heap() -> bool:
    """Give the heap that glibc keeps after freeing back to the system (`malloc_trim`): after loading IEMOCAP's
    shape, about 70 MB of freed read buffers. Numbers are unchanged. False where the C library is not glibc.
    (Mapping every block of 1 MiB or more on its own instead kept the training peak no lower and made a step
    5-13% slower: fresh pages for every batch.)"""
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _read_padded(store: FeatureStore, rows: np.ndarray, cap: int | None) -> Sequences:
    """The store rows `rows` straight into one zero-padded float32 array [N, T, D] (T: the longest kept length,
    at least 1), reading runs of consecutive rows in one call each: no per-utterance arrays, no second copy.
    Absent utterances get length 0; frames marked invalid are dropped; `cap` truncates."""
    lo, hi = store.offsets[rows], store.offsets[rows + 1]
    valid = store._handle()["frame_valid"][:] if store.has_frame_valid else None
    counts = (hi - lo) if valid is None else np.array([int(valid[a:b].sum()) for a, b in zip(lo, hi, strict=True)],
                                                     dtype=np.int64)
    lengths = np.where(store.present[rows], counts, 0)
    if cap:
        lengths = np.minimum(lengths, cap)
    values = np.zeros((len(rows), max(1, int(lengths.max(initial=0))), store.dim), np.float32)
    features = store._handle()["features"]
    row_bytes = store.dim * 4
    i = 0
    while i < len(rows):
        j = i + 1  # extend the block while the rows follow each other in the file and it stays small
        while j < len(rows) and lo[j] == hi[j - 1] and (hi[j] - lo[i]) * row_bytes <= READ_BLOCK_BYTES:
            j += 1
        block = features[int(lo[i]):int(hi[j - 1])]
        for k in range(i, j):
            if lengths[k]:
                frames = block[lo[k] - lo[i]:hi[k] - lo[i]]
                if valid is not None:
                    frames = frames[valid[lo[k]:hi[k]]]
                values[k, :lengths[k]] = frames[:lengths[k]]
        i = j
    return Sequences(torch.from_numpy(values), torch.from_numpy(lengths.astype(np.int64)))


def load_utterances(utts: Sequence[Utterance], classes: Sequence[str], stores: dict[str, FeatureStore],
                    caps: dict[str, int | None] | None = None) -> UtteranceSet:
    """An UtteranceSet of `utts` from the stores, one per modality the set holds (at least one; a modality
    without a store is absent from the set); a modality missing for an utterance has length 0.

    Frames an extractor marked invalid (no face in that frame) are dropped; `caps` truncates long sequences at
    load time (a model never reads past its frame count, and padding to the longest utterance wastes memory).
    """
    caps = caps or {}
    index = {c: i for i, c in enumerate(classes)}
    seqs: dict[str, Sequences | None] = dict.fromkeys(MODALITIES)
    for modality in [m for m in MODALITIES if m in stores]:
        store = stores[modality]
        missing = [u.utt_id for u in utts if u.utt_id not in store]
        if missing:
            raise ConfigError(f"{store.path} lacks {len(missing)} utterances of the split (first {missing[0]!r}); "
                              "re-run its extract stage")
        rows = np.array([store.index[u.utt_id] for u in utts], dtype=np.int64)
        seqs[modality] = _read_padded(store, rows, caps.get(modality))
    labels = torch.tensor([index[u.label] if u.label is not None else UNLABELLED for u in utts], dtype=torch.long)
    release_freed_heap()
    return UtteranceSet([u.utt_id for u in utts], seqs["audio"], seqs["visual"], seqs["text"], labels,
                        [u.speaker for u in utts], [u.dialogue_id for u in utts], [u.turn for u in utts])


def _letters(modalities: Sequence[str]) -> str:
    """MMGCN's letters for a set of modalities: (audio, text) -> "at"."""
    return "".join(letter for letter, m in MODALITY_LETTERS.items() if m in modalities)


def select_folds(folds: list[dict[str, Any]], wanted: Any) -> list[dict[str, Any]]:
    if wanted in (None, "all"):
        return folds
    if not isinstance(wanted, list) or not wanted:
        raise ConfigError(f"train.folds must be 'all' or a non-empty list of fold indices or names, got {wanted!r}")
    chosen = []
    for w in wanted:
        match = folds[w] if isinstance(w, int) and 0 <= w < len(folds) else next(
            (f for f in folds if f["name"] == w), None)
        if match is None:
            raise ConfigError(f"train.folds: no fold {w!r} (there are {len(folds)})")
        chosen.append(match)
    return chosen


def _family(name: str) -> Any:
    module = importlib.import_module(FAMILIES[name])
    if not callable(getattr(module, "train_and_evaluate", None)):
        raise ConfigError(f"{FAMILIES[name]} has no train_and_evaluate")
    return module


def _curves_csv(histories: list[list[dict[str, float]]]) -> str:
    """Per-epoch means over runs (folds x seeds) of every logged number, for `dvc plots`."""
    epochs = max((len(h) for h in histories), default=0)
    keys = sorted({k for h in histories for row in h for k in row if k not in ("epoch", "seconds")})
    fh = io.StringIO(newline="")
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(["epoch", *keys])
    for e in range(epochs):
        rows = [h[e] for h in histories if len(h) > e]
        writer.writerow([e, *[f"{np.mean([r[k] for r in rows if k in r]):.6g}" if any(k in r for r in rows)
                              else "" for k in keys]])
    return fh.getvalue()


class AbsentModalityError(AffectflowError):
    """A modality the model reads is missing for every training utterance."""


def check_modalities_present(stores: dict[str, FeatureStore], train_ids: Sequence[str], allowed: Any, model: str,
                             corpus: str) -> None:
    """Refuse a store whose modality is present for no training utterance (no face ever found, every transcript
    empty), unless `models.<model>.allow_absent_modalities` lists that modality."""
    if not isinstance(allowed, list) or any(m not in MODALITIES for m in allowed):
        raise ConfigError(f"models.{model}.allow_absent_modalities must be a list of {', '.join(MODALITIES)}, "
                          f"got {allowed!r}")
    for modality, store in stores.items():
        rows = [store.index[u] for u in train_ids if u in store.index]
        if not rows or store.present[rows].any() or modality in allowed:
            continue
        reasons = Counter(store.failure[i] or "unknown" for i in rows).most_common(3)
        listing = Path(store.path).with_name(Path(store.path).name.removesuffix(".h5") + ".failures.jsonl")
        raise AbsentModalityError(
            f"the {modality} modality is missing for all {len(rows)} training utterances of {corpus} ("
            + ", ".join(f"{r}: {c}" for r, c in reasons) + f"; see {listing})", str(store.path),
            f"fix the inputs and re-run the extract stage, or set models.{model}.allow_absent_modalities: "
            f"[{modality}] if the corpus has no {modality}")


def _tensors(value: Any) -> Any:
    """numpy arrays as tensors, recursively, so the file loads with torch.load(weights_only=True)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_tensors(v) for v in value]
    return value


@dataclass
class Job:
    """One run: a fold, a seed and a labelled fraction, as positions into the loaded UtteranceSet."""

    fold: str
    seed: int
    fraction: float
    parts: dict[str, list[int]]
    unlabelled: list[int]
    hidden: list[int]  # positions within the fold's train part whose labels are hidden
    init_state: Path | None


def run_job(data: UtteranceSet, job: Job, family_name: str, family_config: dict[str, Any], device: str,
            threads: int) -> FoldOutcome:
    """Train and evaluate one run; everything it needs is in `data` and `job`, so it runs in any process."""
    if threads:
        torch.set_num_threads(threads)
    family = _family(family_name)
    # views share the loaded arrays (no per-run copy) with the families that read them through models.batches
    cut = data.view if getattr(family, "TAKES_VIEWS", False) else data.subset
    parts: dict[str, Any] = {p: cut(idx) for p, idx in job.parts.items()}
    if job.hidden:
        labels = parts["train"].labels.clone()
        labels[job.hidden] = UNLABELLED
        parts["train"].labels = labels
    kwargs: dict[str, Any] = {"seed": job.seed, "device": torch.device(device)}
    if job.init_state is not None:
        kwargs["init_state"] = load_state_file(job.init_state)
    if getattr(family, "USES_UNLABELLED", False):
        kwargs["unlabelled"] = data.subset(job.unlabelled) if job.unlabelled else None
    start = time.perf_counter()
    outcome = family.train_and_evaluate(parts["train"], parts["val"], parts["test"], family_config,
                                                      **kwargs)
    outcome.extras = {**(outcome.extras or {}), "seconds": round(time.perf_counter() - start, 1)}
    return outcome


def load_state_file(path: Path) -> dict[str, Any]:
    """A checkpoint written by the train stage, checked (present, not empty, not an LFS pointer, loadable)."""
    state = read_torch_file(path, "checkpoint")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint holds a {type(state).__name__}, not a state dict", str(path), RESTORE)
    return state


def train_model(params: dict[str, Any], model: str, corpus: str) -> dict[str, Any]:
    """Run every selected fold and seed (and labelled fraction, for a sweep) of one model on one corpus.

    SIGINT and SIGTERM stop it at any point (loading included) with `Interrupted`; nothing is left at its outputs.
    A `cross_corpus` protocol's name in place of the corpus trains a culture model on it (pipeline/cross_training.py).
    """
    from pipeline.cross_corpus import cross_protocols

    guard = SignalGuard()
    with guard.installed():
        try:
            if corpus in cross_protocols(params):
                from pipeline.cross_training import train_cross

                return train_cross(params, model, corpus, guard)
            return _train_model(params, model, corpus, guard)
        except (Stopped, KeyboardInterrupt) as stop:
            name = stop.name if isinstance(stop, Stopped) else "SIGINT"
            raise Interrupted(f"train {model} on {corpus} stopped by {name}; nothing was written",
                              str(checkpoint_dir(model, corpus)), "run it again (earlier outputs are unchanged)"
                              ) from None


@dataclass
class TrainPlan:
    """What one train stage runs: the model's settings, the corpus's folds and the loaded features."""

    model: str
    corpus: str
    config: dict[str, Any]
    family_config: dict[str, Any]
    classes: list[str]
    modalities: list[str]
    protocol: dict[str, Any]
    folds: list[dict[str, Any]]
    seeds: list[int]
    fractions: list[float]
    device: torch.device
    data: UtteranceSet
    outputs: StagedOutputs


def _model_settings(params: dict[str, Any], model: str, corpus: str) -> tuple[dict[str, Any], list[str]]:
    """The model's configuration on the corpus, its family checked and its features narrowed to its modalities."""
    config = model_config(params, model, corpus)
    _family(config["family"])  # fail early when the family has no train_and_evaluate
    modalities = model_modalities(params, model, corpus)  # fails early when the model cannot train on the corpus
    config["features"] = {m: config["features"][m] for m in modalities}
    if "modalities" in config:  # recorded as it took effect
        config["modalities"] = _letters(modalities) if isinstance(config["modalities"], str) else list(modalities)
    return config, list(modalities)


def _protocol_folds(config: dict[str, Any], model: str, corpus: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The model's protocol in the corpus's split file, its selected folds and its labelled fractions checked."""
    splits = load_splits(split_path(corpus))
    if config["protocol"] not in splits["protocols"]:
        raise ConfigError(f"models.{model}.protocol {config['protocol']!r} is not a protocol of "
                          f"corpora.{corpus}.splits ({sorted(splits['protocols'])})")
    protocol = splits["protocols"][config["protocol"]]
    for fraction in (float(f) for f in config.get("labelled_fractions", [1.0])):
        if fraction < 1.0 and f"{fraction:g}" not in protocol["hidden_labels"]:
            raise ConfigError(f"models.{model}: labelled fraction {fraction} is not in splits.labelled_fractions")
    return protocol, select_folds(protocol["folds"], config.get("folds", "all"))


def plan_training(params: dict[str, Any], model: str, corpus: str) -> TrainPlan:
    """Check the settings, the split and the stores, then load every utterance the selected folds use."""
    config, modalities = _model_settings(params, model, corpus)
    info = CorpusInfo.read(corpus_info_path(corpus))
    utts = {u.utt_id: u for u in read_manifest(manifest_path(corpus), info.classes)}
    protocol, folds = _protocol_folds(config, model, corpus)
    device = pick_device(str(config.get("device", "auto")))
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    stores = {m: FeatureStore(store_path(corpus, config["features"][m])) for m in modalities}
    check_modalities_present(stores, sorted({i for f in folds for i in f["train"]}),
                             config.get("allow_absent_modalities", []), model, corpus)
    outputs = StagedOutputs(checkpoint_dir(model, corpus), [metrics_path(model, corpus), curves_path(model, corpus)],
                            [live_dir(model, corpus)])  # dvclive's metrics, curves and confusions (tracking.py)
    outputs.check_writable()  # a read-only or full metrics/ fails now, not after hours of training
    family_config = {**{k: v for k, v in config.items() if k not in PIPELINE_KEYS}, "n_classes": len(info.classes)}
    family_config.pop("modalities", None)
    if getattr(_family(config["family"]), "NARROWS_MODALITIES", False):  # MMGCN: its setting, as the letters it gets
        family_config["modalities"] = _letters(modalities)
    caps = {m: (config.get("frames") or {}).get(m) for m in modalities}
    needed = sorted({i for f in folds for part in ("train", "val", "test", "unlabelled") for i in f[part]})
    data = load_utterances([utts[i] for i in needed], info.classes, stores, caps)
    return TrainPlan(model, corpus, config, family_config, list(info.classes), modalities, protocol, folds,
                     [int(s) for s in config.get("seeds", [0])],
                     [float(f) for f in config.get("labelled_fractions", [1.0])],
                     device, data, outputs)


def build_jobs(plan: TrainPlan) -> list[Job]:
    """One job per labelled fraction, fold and seed, as positions into the loaded data; a run that starts from
    another model's checkpoint fails now when that checkpoint is absent or unreadable."""
    position = {u: i for i, u in enumerate(plan.data.utt_ids)}
    init_from, config = plan.config.get("init_from"), plan.config
    uses_pool = getattr(_family(config["family"]), "USES_UNLABELLED", False) and config.get("use_unlabelled", True)
    jobs = []
    for fraction in plan.fractions:
        for fold in plan.folds:
            for seed in plan.seeds:
                hidden = set(plan.protocol["hidden_labels"].get(f"{fraction:g}", {}).get(fold["name"], [])
                             if fraction < 1 else [])
                state_file = None
                if init_from:
                    state_file = checkpoint_dir(init_from, plan.corpus) / f"{fold['name']}_seed{seed}.pt"
                    if not state_file.exists():
                        raise ConfigError(f"models.{plan.model}.init_from: {state_file} does not exist; run the train "
                                          f"stage of {init_from} on {plan.corpus} with the same folds and seeds first")
                    load_state_file(state_file)  # a truncated, empty or LFS-pointer checkpoint fails before training
                pool = fold["unlabelled"] if uses_pool else []
                jobs.append(Job(fold["name"], seed, fraction,
                                {p: [position[i] for i in fold[p]] for p in ("train", "val", "test")},
                                [position[i] for i in pool],
                                [k for k, u in enumerate(fold["train"]) if u in hidden], state_file))
    return jobs


class RunRecorder:
    """Saves each finished run's weights into the staging folder and keeps its metrics, predictions and curves
    (no timings: the outputs are deterministic)."""

    def __init__(self, plan: TrainPlan) -> None:
        self.plan = plan
        self.runs: list[dict[str, Any]] = []
        self.by_fraction: dict[float, list[FoldOutcome]] = {f: [] for f in plan.fractions}

    def add(self, job: Job, outcome: FoldOutcome) -> None:
        plan, out_dir = self.plan, self.plan.outputs.staging
        suffix = f"_frac{job.fraction:g}" if len(plan.fractions) > 1 else ""
        plan.outputs.write_bytes(out_dir / f"{job.fold}_seed{job.seed}{suffix}.pt", torch_bytes(outcome.state))
        extras = outcome.extras or {}
        arrays = {k: v for k, v in extras.items() if not isinstance(v, (int, float, str))}
        first = job.fraction == max(plan.fractions) and job.fold == plan.folds[0]["name"] and job.seed == plan.seeds[0]
        if first and arrays:
            plan.outputs.write_bytes(out_dir / "extras.pt", torch_bytes(_tensors(arrays)))  # embeddings etc.
        self.by_fraction[job.fraction].append(outcome)
        self.runs.append(run_record(job.fold, job.seed, outcome, labelled_fraction=job.fraction,
                                    best_epoch=extras.get("best_epoch")))
        full = outcome.metrics.get(full_condition(plan.modalities), {})
        log.info("%s %s seed %d fraction %g: %s (%.1f s)", plan.model, job.fold, job.seed, job.fraction,
                 {k: round(v, 4) for k, v in (outcome.metrics.get("average") or full).items()},
                 extras.get("seconds", float("nan")))


def run_jobs(plan: TrainPlan, jobs: list[Job], guard: SignalGuard, recorder: RunRecorder) -> None:
    """Run the jobs in this process or in a pool of `workers` processes (CPU only), recording each as it ends."""
    workers = int(plan.config.get("workers", 1) or 1) if plan.device.type == "cpu" else 1  # one process drives a GPU
    run = functools.partial(run_job, family_name=plan.config["family"], family_config=plan.family_config,
                            device=str(plan.device), threads=int(plan.config.get("threads") or 0))
    run_all(run, plan.data, jobs, workers, guard, f"train {plan.model} on {plan.corpus}", recorder.add)


def write_outputs(plan: TrainPlan, recorder: RunRecorder, guard: SignalGuard) -> dict[str, Any]:
    """metrics.json, runs.json, the curves and dvclive's summaries, staged; then committed all at once."""
    model, corpus, config, outputs = plan.model, plan.corpus, plan.config, plan.outputs
    full = max(plan.fractions)
    metrics: dict[str, Any] = {"model": model, "family": config["family"], "corpus": corpus,
                               "protocol": config["protocol"], "folds": len(plan.folds),
                               "fold_names": [f["name"] for f in plan.folds], "seeds": plan.seeds,
                               "conditions": conditions_summary(recorder.by_fraction[full])}
    if len(plan.fractions) > 1:
        metrics["sweep"] = {"labelled_fraction": {f"{f:g}": {"conditions": conditions_summary(recorder.by_fraction[f])}
                                                  for f in plan.fractions}}
    full_runs = [r for r in recorder.runs if r["labelled_fraction"] == full]
    outputs.write_text(metrics_path(model, corpus), metrics_json(metrics))
    outputs.write_text(outputs.staging / "runs.json", runs_json(model, corpus, config, plan.classes, recorder.runs))
    outputs.write_text(curves_path(model, corpus), _curves_csv([r["history"] for r in full_runs]))
    log_runs(outputs.staged(live_dir(model, corpus)), metrics, full_runs, plan.classes,
             full_condition(plan.modalities))
    with guard.critical():
        outputs.commit()
    return metrics


def _train_model(params: dict[str, Any], model: str, corpus: str, guard: SignalGuard) -> dict[str, Any]:
    plan = plan_training(params, model, corpus)
    jobs = build_jobs(plan)
    recorder = RunRecorder(plan)
    start = time.perf_counter()
    try:
        plan.outputs.begin()
        run_jobs(plan, jobs, guard, recorder)
        metrics = write_outputs(plan, recorder, guard)
    except OSError as err:
        with guard.shielded():
            plan.outputs.discard()
        raise OutputError(f"cannot write the outputs of train {model} on {corpus}: {os_reason(err)}",
                          str(plan.outputs.declared(err.filename)),
                          "free space or make the folder writable and run again (earlier outputs are "
                          "unchanged)") from None
    except BaseException:
        with guard.shielded():  # a second Ctrl-C does not cut the cleanup short
            plan.outputs.discard()
        raise
    log.info("trained %s on %s: %d runs in %.1f s on %s", model, corpus, len(recorder.runs),
             time.perf_counter() - start, plan.device)
    return metrics
