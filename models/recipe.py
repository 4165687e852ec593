"""The training recipe MMIN and its utterance baselines share: configuration checks, Adam with the
constant-then-linear-decay schedule, epochs of (utterance, condition) batches, per-network gradient clipping,
model selection on validation UA, and the evaluation on every missing-modality condition of the test split.

A family supplies its network, the encoders, a `head` mapping fused vectors to logits, and a `step` computing its
losses on a batch; this module does the rest and returns `models.trainer.FoldOutcome`.
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
from models.conditions import AVERAGE, REPORTED_CONDITIONS, condition_metrics, epoch_items
from models.data import CONDITIONS, MISSING_CONDITIONS, MODALITIES, UtteranceSet, condition_mask
from models.encoders import FUSION_ORDER, UtteranceEncoders
from models.trainer import FoldOutcome, constant_then_linear_decay, fit, seed_everything

log = logging.getLogger(__name__)

# keys every family's cfg must carry (families add their own)
RECIPE_KEYS = ("n_classes", "encoder", "frames", "normalise", "classifier_hidden", "dropout", "lr", "betas",
               "weight_decay", "batch_size", "eval_batch_size", "epochs_constant", "epochs_decay", "clip_norm",
               "clip_scope", "train_conditions", "train_sampling", "select_on")
ENCODER_KEYS = ("audio_hidden", "visual_hidden", "text_embedding", "text_filters", "text_kernel_heights",
                "text_dropout", "pool_over_padding")

Head = Callable[[Tensor], Tensor]


def require(cfg: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """Fail before any work when configuration keys are missing, naming them and where they belong."""
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ValueError(f"{where}: configuration lacks {missing}")


def check_recipe_cfg(cfg: Mapping[str, Any], where: str) -> None:
    require(cfg, RECIPE_KEYS, where)
    require(cfg["encoder"], ENCODER_KEYS, f"{where}.encoder")
    unknown = [c for c in cfg["train_conditions"] if c not in CONDITIONS]
    if unknown or not cfg["train_conditions"]:
        raise ValueError(f"{where}: train_conditions {list(cfg['train_conditions'])} must be non-empty names "
                         f"from {list(CONDITIONS)}")
    if cfg["select_on"] not in (*CONDITIONS, AVERAGE):
        raise ValueError(f"{where}: select_on {cfg['select_on']!r} must be a condition name or {AVERAGE!r}")
    if cfg["clip_scope"] not in ("per_network", "global"):
        raise ValueError(f"{where}: clip_scope must be 'per_network' or 'global', got {cfg['clip_scope']!r}")
    if int(cfg["n_classes"]) < 2 or int(cfg["batch_size"]) < 1 or int(cfg["eval_batch_size"]) < 1:
        raise ValueError(f"{where}: n_classes must be >= 2 and batch sizes >= 1")


def start(cfg: Mapping[str, Any], seed: int, where: str) -> torch.Generator:
    """Check the configuration and seed everything; the returned generator drives shuffling and condition draws."""
    check_recipe_cfg(cfg, where)
    return seed_everything(seed)


def prepare(train: UtteranceSet, val: UtteranceSet, test: UtteranceSet, cfg: Mapping[str, Any],
            device: torch.device) -> dict[str, FoldTensors]:
    return prepare_fold({"train": train, "val": val, "test": test}, int(cfg["n_classes"]), cfg["frames"],
                        cfg["normalise"], device)


@dataclass
class ItemBatch:
    """A training batch: utterance indices [B] into the train split and their presence rows [B, 3]."""

    utterances: Tensor
    presence: Tensor


def epoch_batches(n_utterances: int, cfg: Mapping[str, Any], generator: torch.Generator,
                  device: torch.device) -> Callable[[int], Iterator[ItemBatch]]:
    """Batches of one epoch, drawn anew each epoch from the seeded generator (on the CPU, so reproducible)."""
    table = condition_mask(cfg["train_conditions"])
    batch_size = int(cfg["batch_size"])

    def batches(epoch: int) -> Iterator[ItemBatch]:
        utterances, conditions = epoch_items(n_utterances, len(table), cfg["train_sampling"], generator)
        presence = table[conditions]
        for start in range(0, len(utterances), batch_size):
            yield ItemBatch(utterances[start:start + batch_size].to(device),
                            presence[start:start + batch_size].to(device))

    return batches


@torch.no_grad()
def predict_conditions(encoders: UtteranceEncoders, head: Head, data: FoldTensors, conditions: Sequence[str],
                       batch_size: int, trim: bool) -> dict[str, Tensor]:
    """Logits [N, C] per condition. Each modality is encoded twice per batch, present and zeroed, and the
    conditions are assembled from those: the same as encoding every masked copy, at 2/7 of the cost."""
    logits: dict[str, list[Tensor]] = {c: [] for c in conditions}
    need_absent = any(0 in CONDITIONS[c] for c in conditions)
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)), device=data.labels.device)
        full = data.inputs(idx, trim=trim)
        present = encoders.embed(full)
        absent = encoders.embed({m: (v * 0, n) for m, (v, n) in full.items()}) if need_absent else present
        for c in conditions:
            flags = dict(zip(MODALITIES, CONDITIONS[c], strict=True))
            fused = torch.cat([present[m] if flags[m] else absent[m] for m in FUSION_ORDER], dim=-1)
            logits[c].append(head(fused))
    return {c: torch.cat(parts) for c, parts in logits.items()}


def evaluate(encoders: UtteranceEncoders, head: Head, data: FoldTensors, conditions: Sequence[str],
             cfg: Mapping[str, Any]) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Metrics per condition (plus "average" when the six missing ones are asked for) and the predictions."""
    logits = predict_conditions(encoders, head, data, conditions, int(cfg["eval_batch_size"]),
                                trim=not cfg["encoder"]["pool_over_padding"])
    predictions = {c: lg.argmax(dim=-1).cpu().numpy() for c, lg in logits.items()}
    labels = data.labels.cpu().numpy()
    return condition_metrics(labels, predictions, int(cfg["n_classes"])), predictions


def selection_conditions(select_on: str) -> tuple[str, ...]:
    return MISSING_CONDITIONS if select_on == AVERAGE else (select_on,)


def train_and_test(model: nn.Module, encoders: UtteranceEncoders, head: Head, folds: Mapping[str, FoldTensors],
                   cfg: Mapping[str, Any], *, step: Callable[[ItemBatch, int], dict[str, Tensor]],
                   networks: Sequence[nn.Module], generator: torch.Generator, device: torch.device,
                   describe: str) -> FoldOutcome:
    """Fit on train with selection on validation, then evaluate the selected weights on every test condition.

    networks: the parts whose gradients are clipped separately under `clip_scope: per_network`."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=float(cfg["lr"]), betas=tuple(float(b) for b in cfg["betas"]),
                                 weight_decay=float(cfg["weight_decay"]))
    scheduler = constant_then_linear_decay(optimizer, int(cfg["epochs_constant"]), int(cfg["epochs_decay"]))
    select_on = cfg["select_on"]
    chosen = selection_conditions(select_on)

    def validate() -> dict[str, float]:
        return evaluate(encoders, head, folds["val"], chosen, cfg)[0][select_on]

    per_network = cfg["clip_scope"] == "per_network"
    started = time.perf_counter()
    result = fit(model, epochs=int(cfg["epochs_constant"]) + int(cfg["epochs_decay"]),
                 batches=epoch_batches(len(folds["train"]), cfg, generator, device), step=step,
                 optimizer=optimizer, evaluate=validate, select="ua", scheduler=scheduler,
                 clip_norm=float(cfg["clip_norm"]),
                 clip_groups=[list(n.parameters()) for n in networks] if per_network else None,
                 params_to_clip=None if per_network else params, describe=describe)
    model.load_state_dict(result.best_state)
    model.eval()
    metrics, predictions = evaluate(encoders, head, folds["test"], REPORTED_CONDITIONS, cfg)
    labels = folds["test"].labels.cpu().numpy()
    log.info("%s: %d epochs in %.1f s, best epoch %d (val %s UA %.4f), test avl UA %.4f, average UA %.4f",
             describe, len(result.history), time.perf_counter() - started, result.best_epoch, select_on,
             result.best_score, metrics["avl"]["ua"], metrics[AVERAGE]["ua"])
    return FoldOutcome(metrics=metrics, state={k: v.detach().cpu() for k, v in result.best_state.items()},
                       history=result.history, predictions={c: (labels, p) for c, p in predictions.items()},
                       extras={"best_epoch": result.best_epoch, "best_val_ua": result.best_score})

