"""The training recipe MMIN and its utterance baselines share: configuration checks, Adam with the
constant-then-linear-decay schedule, epochs of (utterance, condition) batches, per-network gradient clipping,
model selection on validation UA, and the evaluation on every missing-modality condition of the test split.

A family supplies its network, the encoders, a `head` mapping fused vectors to logits, and a `step` computing its
losses on a batch; this module does the rest and returns `models.trainer.FoldOutcome`.

The configured conditions are written over the three modalities; `condition_plan` maps them onto the modalities
the data holds (`models.condition_names`): over audio and text the model trains on the missing conditions `azz`
and `zzl` that the six listed ones leave, is tested on `azz`, `zzl` and the full `azl`, and "average" pools `azz`
and `zzl`; over audio alone there is only the full condition `azz` and no average.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from models.batches import FoldTensors, prepare_fold
from models.condition_names import (
    AVERAGE,
    CONDITIONS,
    full_condition,
    missing_conditions,
    selection_condition,
    training_conditions,
)
from models.conditions import condition_metrics, epoch_items
from models.data import MODALITIES, UtteranceSet, UtteranceView, condition_mask
from models.encoders import UtteranceEncoders
from models.trainer import FoldOutcome, adam, constant_then_linear_decay, fit, seed_everything

log = logging.getLogger(__name__)

# keys every family's config must carry (families add their own)
RECIPE_KEYS = ("n_classes", "encoder", "frames", "normalise", "classifier_hidden", "dropout", "lr", "betas",
               "weight_decay", "batch_size", "eval_batch_size", "epochs_constant", "epochs_decay", "clip_norm",
               "clip_scope", "train_conditions", "train_sampling", "select_on")
ENCODER_KEYS = ("audio_hidden", "visual_hidden", "text_embedding", "text_filters", "text_kernel_heights",
                "text_dropout", "pool_over_padding")

Head = Callable[[Tensor], Tensor]
Parts = UtteranceSet | UtteranceView  # a split: a set, or a view of the loaded set (no copy)


def require(config: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """Fail before any work when configuration keys are missing, naming them and where they belong."""
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"{where}: configuration lacks {missing}")


def check_recipe_cfg(config: Mapping[str, Any], where: str) -> None:
    require(config, RECIPE_KEYS, where)
    require(config["encoder"], ENCODER_KEYS, f"{where}.encoder")
    unknown = [c for c in config["train_conditions"] if c not in CONDITIONS]
    if unknown or not config["train_conditions"]:
        raise ValueError(f"{where}: train_conditions {list(config['train_conditions'])} must be non-empty names "
                         f"from {list(CONDITIONS)}")
    if config["select_on"] not in (*CONDITIONS, AVERAGE):
        raise ValueError(f"{where}: select_on {config['select_on']!r} must be a condition name or {AVERAGE!r}")
    if config["clip_scope"] not in ("per_network", "global"):
        raise ValueError(f"{where}: clip_scope must be 'per_network' or 'global', got {config['clip_scope']!r}")
    if int(config["n_classes"]) < 2 or int(config["batch_size"]) < 1 or int(config["eval_batch_size"]) < 1:
        raise ValueError(f"{where}: n_classes must be >= 2 and batch sizes >= 1")


@dataclass(frozen=True)
class ConditionPlan:
    """The configured conditions over the modalities the data holds: what a model trains on, selects on (a
    condition or "average") and is tested on (the missing conditions, then the full one)."""

    modalities: tuple[str, ...]
    train: tuple[str, ...]
    select_on: str
    missing: tuple[str, ...]
    full: str

    @property
    def reported(self) -> tuple[str, ...]:
        return (*self.missing, self.full)

    def selection(self) -> tuple[str, ...]:
        """The conditions whose predictions the selection score needs."""
        return self.missing if self.select_on == AVERAGE else (self.select_on,)


def condition_plan(config: Mapping[str, Any], modalities: Sequence[str], where: str) -> ConditionPlan:
    """`train_conditions` and `select_on` over `modalities`. A missing-condition list with nothing left to drop
    (one modality) trains on the full condition: the augmented baseline then equals the plain one."""
    train = training_conditions(config["train_conditions"], modalities)
    full = full_condition(modalities)
    if not train:
        log.info("%s: no condition of train_conditions %s is a missing-modality condition over %s; training on "
                 "the full condition %s", where, list(config["train_conditions"]), list(modalities), full)
        train = [full]
    try:
        select_on = selection_condition(config["select_on"], modalities)
    except ValueError as err:
        raise ValueError(f"{where}: select_on: {err}") from None
    return ConditionPlan(tuple(modalities), tuple(train), select_on, missing_conditions(modalities), full)


def start(config: Mapping[str, Any], seed: int, where: str) -> torch.Generator:
    """Check the configuration and seed everything; the returned generator drives shuffling and condition draws."""
    check_recipe_cfg(config, where)
    return seed_everything(seed)


def fold_tensors(train: Parts, val: Parts, test: Parts, config: Mapping[str, Any],
                 device: torch.device) -> dict[str, FoldTensors]:
    """The fold's three parts as padded tensors on `device` (frames and normalisation as `config` says)."""
    return prepare_fold({"train": train, "val": val, "test": test}, int(config["n_classes"]), config["frames"],
                        config["normalise"], device)


@dataclass
class ItemBatch:
    """A training batch: utterance indices [B] into the train split and their presence rows [B, 3]."""

    utterances: Tensor
    presence: Tensor


def epoch_batches(n_utterances: int, config: Mapping[str, Any], generator: torch.Generator,
                  device: torch.device, conditions: Sequence[str]) -> Callable[[int], Iterator[ItemBatch]]:
    """Batches of one epoch over the training `conditions`, drawn anew each epoch from the seeded generator (on the
    CPU, so reproducible)."""
    table = condition_mask(conditions)
    batch_size = int(config["batch_size"])

    def batches(epoch: int) -> Iterator[ItemBatch]:
        utterances, conditions = epoch_items(n_utterances, len(table), config["train_sampling"], generator)
        presence = table[conditions]
        for start in range(0, len(utterances), batch_size):
            yield ItemBatch(utterances[start:start + batch_size].to(device),
                            presence[start:start + batch_size].to(device))

    return batches


def zeroed(batch: dict[str, tuple[Tensor, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
    """The batch with every modality zeroed, lengths kept; consumes `batch` (its values are released as the
    zeros are made, so a batch and its zeroed copy are never both alive: on IEMOCAP's shape at the evaluation
    batch of 512, 100 MB less at the peak). Equal to `values * 0` up to the sign of zero, which no encoder
    output can tell apart (zero frames give the biases exactly)."""
    out = {}
    for name in list(batch):
        values, lengths = batch.pop(name)
        out[name] = (torch.zeros_like(values), lengths)
        del values
    return out


@torch.no_grad()
def predict_conditions(encoders: UtteranceEncoders, head: Head, data: FoldTensors, conditions: Sequence[str],
                       batch_size: int, trim: bool) -> dict[str, Tensor]:
    """Logits [N, C] per condition. Each modality is encoded present and zeroed, and the conditions are assembled
    from those: the same as encoding every masked copy, at 2/7 of the cost. Without `trim` (pooling over padding,
    fixed frame counts) a zeroed modality's embedding does not depend on the utterance, so it is encoded once per
    batch size, not once per batch. Only the encoders' modalities are fed; a condition's flags for other
    modalities are ignored."""
    logits: dict[str, list[Tensor]] = {c: [] for c in conditions}
    fused_order = encoders.modalities
    need_absent = any(not dict(zip(MODALITIES, CONDITIONS[c], strict=True))[m] for c in conditions
                      for m in fused_order)
    absent_by_size: dict[int, dict[str, Tensor]] = {}
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)), device=data.labels.device)
        full = data.inputs(idx, trim=trim)
        present = encoders.embed(full)
        if not need_absent:
            absent = present
        elif trim or len(idx) not in absent_by_size:
            absent = encoders.embed(zeroed(full))
            if not trim:
                absent_by_size[len(idx)] = absent
        else:
            absent = absent_by_size[len(idx)]
        del full  # the batch's values are not needed for the head: freed before the next batch is gathered
        for c in conditions:
            flags = dict(zip(MODALITIES, CONDITIONS[c], strict=True))
            fused = torch.cat([present[m] if flags[m] else absent[m] for m in fused_order], dim=-1)
            logits[c].append(head(fused))
    return {c: torch.cat(parts) for c, parts in logits.items()}


def evaluate(encoders: UtteranceEncoders, head: Head, data: FoldTensors, conditions: Sequence[str],
             config: Mapping[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Metrics per condition (plus "average" when the missing conditions over the encoders' modalities are asked
    for) and the predictions."""
    logits = predict_conditions(encoders, head, data, conditions, int(config["eval_batch_size"]),
                                trim=not config["encoder"]["pool_over_padding"])
    predictions = {c: lg.argmax(dim=-1).cpu().numpy() for c, lg in logits.items()}
    labels = data.labels.cpu().numpy()
    pooled = missing_conditions(encoders.modalities)
    return condition_metrics(labels, predictions, int(config["n_classes"]), pooled), predictions


def train_and_test(model: nn.Module, encoders: UtteranceEncoders, head: Head, folds: Mapping[str, FoldTensors],
                   config: Mapping[str, Any], *, step: Callable[[ItemBatch, int], dict[str, Tensor]],
                   networks: Sequence[nn.Module], generator: torch.Generator, device: torch.device,
                   describe: str, plan: ConditionPlan) -> FoldOutcome:
    """Fit on train with selection on validation, then evaluate the selected weights on every test condition of
    `plan` (the conditions over the data's modalities).

    networks: the parts whose gradients are clipped separately under `clip_scope: per_network`."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = adam(params, lr=float(config["lr"]), betas=tuple(float(b) for b in config["betas"]),
                                 weight_decay=float(config["weight_decay"]))
    scheduler = constant_then_linear_decay(optimizer, int(config["epochs_constant"]), int(config["epochs_decay"]))
    select_on = plan.select_on
    chosen = plan.selection()

    def validate() -> dict[str, float]:
        return evaluate(encoders, head, folds["val"], chosen, config)[0][select_on]

    per_network = config["clip_scope"] == "per_network"
    started = time.perf_counter()
    result = fit(model, epochs=int(config["epochs_constant"]) + int(config["epochs_decay"]),
                 batches=epoch_batches(len(folds["train"]), config, generator, device, plan.train), step=step,
                 optimizer=optimizer, evaluate=validate, select="ua", scheduler=scheduler,
                 clip_norm=float(config["clip_norm"]),
                 clip_groups=[list(n.parameters()) for n in networks] if per_network else None,
                 params_to_clip=None if per_network else params, describe=describe)
    model.load_state_dict(result.best_state)
    model.eval()
    metrics, predictions = evaluate(encoders, head, folds["test"], plan.reported, config)
    labels = folds["test"].labels.cpu().numpy()
    log.info("%s: %d epochs in %.1f s, best epoch %d (val %s UA %.4f), test %s UA %.4f, average UA %s",
             describe, len(result.history), time.perf_counter() - started, result.best_epoch, select_on,
             result.best_score, plan.full, metrics[plan.full]["ua"],
             f"{metrics[AVERAGE]['ua']:.4f}" if AVERAGE in metrics else "n/a")
    return FoldOutcome(metrics=metrics, state={k: v.detach().cpu() for k, v in result.best_state.items()},
                       history=result.history, predictions={c: (labels, p) for c, p in predictions.items()},
                       extras={"best_epoch": result.best_epoch, "best_val_ua": result.best_score})

