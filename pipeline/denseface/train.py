"""The `train-denseface` stage: train Denseface on a FER-format set, select on PublicTest, write the checkpoint the
`denseface` extractor loads and the PublicTest / PrivateTest accuracies as a metrics file.

MMIN's authors trained their Denseface on FER+ and never released it; this stage makes the weights reproducible.
Faces are resized 48 -> `input.size` (64) once, normalised (x - mean) / std per batch, and, when switched on,
augmented per batch on the fly (horizontal flip, small rotation, scale and shift) from a seeded generator, so the
same config gives the same weights on CPU. Targets are the FER+ majority (one-hot) or vote distribution; the loss
is cross-entropy against them and accuracy counts argmax(prediction) == argmax(target), as FER+ reports it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F
from tqdm import tqdm

from models.denseface import Denseface, DensefaceConfig
from models.trainer import FitResult, fit, pick_device, seed_everything
from pipeline.denseface.checkpoint import Normalisation, save_checkpoint
from pipeline.denseface.fer import FerSet, check_reader_config, read_fer
from pipeline.errors import AffectflowError

log = logging.getLogger(__name__)

SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("fer2013", "ferplus", "targets", "drop_single_votes", "majority_share"),
    "network": ("depth", "growth_rate", "n_blocks", "compression", "bottleneck", "dropout"),
    "input": ("size", "mean", "std"),
    "augment": ("enabled", "flip", "max_rotation_deg", "max_scale", "max_shift"),
    "optim": ("epochs", "batch_size", "eval_batch_size", "lr", "momentum", "nesterov", "weight_decay",
              "lr_milestones", "lr_gamma"),
}
TOP_LEVEL = ("seed", "device")


class TrainConfigError(AffectflowError, ValueError):
    """A training configuration problem, found before any work starts."""


def check_config(config: dict[str, Any]) -> None:
    """Every key present and sane; raises TrainConfigError naming the key."""
    absent = [k for k in (*SECTIONS, *TOP_LEVEL) if k not in config]
    if absent:
        raise TrainConfigError(f"train-denseface config lacks {absent}")
    for section, keys in SECTIONS.items():
        if not isinstance(config[section], dict):
            raise TrainConfigError(f"{section} must be a mapping, got {config[section]!r}")
        missing = [k for k in keys if k not in config[section]]
        extra = sorted(set(config[section]) - set(keys))
        if missing or extra:
            raise TrainConfigError(f"{section}: missing {missing}, unknown {extra} (expected {list(keys)})")
    try:
        check_reader_config(config["data"])
        DensefaceConfig.from_dict(config["network"])
    except ValueError as err:
        raise TrainConfigError(str(err)) from None
    optim, inp, aug = config["optim"], config["input"], config["augment"]
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if not isinstance(optim[key], int) or optim[key] < 1:
            raise TrainConfigError(f"optim.{key} must be a positive integer, got {optim[key]!r}")
    if not optim["lr"] > 0:
        raise TrainConfigError(f"optim.lr must be positive, got {optim['lr']!r}")
    if any(not 0 < m < 1 for m in optim["lr_milestones"]):
        raise TrainConfigError(f"optim.lr_milestones are fractions of the epochs in (0, 1), got "
                               f"{optim['lr_milestones']!r}")
    if not isinstance(inp["size"], int) or inp["size"] < 16 or not inp["std"] > 0:
        raise TrainConfigError(f"input needs size >= 16 and std > 0, got {inp!r}")
    if aug["max_scale"] < 0 or not 0 <= aug["max_shift"] < 0.5 or aug["max_rotation_deg"] < 0:
        raise TrainConfigError(f"augment ranges must be non-negative (max_shift < 0.5), got {aug!r}")


def resize_faces(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [N, 48, 48] -> uint8 tensor [N, 1, size, size] (bilinear), done once for the whole set."""
    if images.shape[1:] == (size, size):
        out = np.ascontiguousarray(images)
    else:
        out = np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR) for img in images])
    return torch.from_numpy(out).unsqueeze(1)


def normalise(batch_uint8: Tensor, norm: Normalisation) -> Tensor:
    return (batch_uint8.float() - norm.mean) / norm.std


def augment(batch: Tensor, config: dict[str, Any], generator: torch.Generator) -> Tensor:
    """Random flip / rotation / scale / shift of a normalised batch [B, 1, H, W] (border pixels repeat)."""
    b = batch.shape[0]

    def uniform(limit: float) -> Tensor:
        return (torch.rand(b, generator=generator) * 2 - 1) * limit

    angle = uniform(math.radians(config["max_rotation_deg"]))
    scale = 1 + uniform(config["max_scale"])
    shift = uniform(2 * config["max_shift"]), uniform(2 * config["max_shift"])  # grid coordinates span 2
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0) if config["flip"] else torch.ones(b)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[0]], 1),
                         torch.stack([sin * flip, cos, shift[1]], 1)], 1)
    grid = F.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid.to(batch.device), mode="bilinear", padding_mode="border", align_corners=False)


@dataclass
class FaceTensors:
    """One usage of a FER set on its way into the network."""

    images: Tensor  # uint8 [N, 1, S, S]
    targets: Tensor  # float32 [N, C]
    labels: Tensor  # int64 [N]

    @classmethod
    def from_set(cls, fer_set: FerSet, size: int) -> FaceTensors:
        return cls(resize_faces(fer_set.images, size), torch.from_numpy(fer_set.targets),
                   torch.from_numpy(fer_set.labels))

    def __len__(self) -> int:
        return len(self.labels)


def evaluate(model: Denseface, data: FaceTensors, norm: Normalisation, batch_size: int,
             device: torch.device) -> dict[str, float]:
    """Accuracy (argmax prediction vs argmax target) and mean cross-entropy against the targets."""
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for lo in range(0, len(data), batch_size):
            x = normalise(data.images[lo:lo + batch_size], norm).to(device, memory_format=torch.channels_last)
            logits = model(x)
            target = data.targets[lo:lo + batch_size].to(device)
            loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(1).cpu() == data.labels[lo:lo + batch_size]).sum())
    model.train(was_training)
    n = max(len(data), 1)
    return {"accuracy": correct / n, "loss": loss_sum / n}


@dataclass
class TrainingOutcome:
    model: Denseface
    classes: list[str]
    normalisation: Normalisation
    metrics: dict[str, Any]
    history: list[dict[str, float]]


def _usage_splits(fer_set: FerSet) -> dict[str, FerSet]:
    """The Training, PublicTest and PrivateTest parts, none of them empty."""
    splits = {usage: fer_set.subset(usage) for usage in ("Training", "PublicTest", "PrivateTest")}
    empty = [u for u, s in splits.items() if len(s) == 0]
    if empty:
        raise TrainConfigError(f"the FER set has no {empty} faces; training needs Training, PublicTest (model "
                               f"selection) and PrivateTest (the reported score)")
    return splits


def _sgd_with_steps(model: Denseface, optim_cfg: dict[str, Any],
                    ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR]:
    """SGD (Nesterov when asked and momentum > 0) and its step decay at `lr_milestones` (fractions of the epochs)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=optim_cfg["lr"], momentum=optim_cfg["momentum"],
                                nesterov=bool(optim_cfg["nesterov"]) and optim_cfg["momentum"] > 0,
                                weight_decay=optim_cfg["weight_decay"])
    epochs = optim_cfg["epochs"]
    milestones = sorted({max(1, round(m * epochs)) for m in optim_cfg["lr_milestones"]})
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=optim_cfg["lr_gamma"])


def _run_facts(fer_set: FerSet, config: dict[str, Any], network: DensefaceConfig, result: FitResult,
               train_faces: int) -> dict[str, Any]:
    """The metrics' entries after the two test scores: training losses, selection, network and data facts."""
    return {
        "train": {"faces": train_faces, "first_epoch_loss": result.history[0]["train_loss"],
                  "last_epoch_loss": result.history[-1]["train_loss"]},
        "best_epoch": result.best_epoch, "epochs": config["optim"]["epochs"], "feature_dim": network.feature_dim,
        "targets": config["data"]["targets"], "classes": list(fer_set.classes),
        "dropped": dict(sorted(fer_set.dropped.items())),
    }


def train_on_set(fer_set: FerSet, config: dict[str, Any], progress: bool = True) -> TrainingOutcome:
    """Train on the Training faces, select the epoch with the best PublicTest accuracy, score PrivateTest."""
    check_config(config)
    splits = _usage_splits(fer_set)
    generator = seed_everything(int(config["seed"]))
    augment_generator = torch.Generator().manual_seed(int(config["seed"]) + 1)
    device = pick_device(config["device"])
    norm = Normalisation(int(config["input"]["size"]), float(config["input"]["mean"]), float(config["input"]["std"]))
    network = DensefaceConfig.from_dict({**config["network"], "n_classes": len(fer_set.classes)})
    model = Denseface(network).to(device, memory_format=torch.channels_last)  # NHWC: ~1.5x faster on CPU
    optim_cfg, aug_cfg = config["optim"], config["augment"]
    train, public, private = (FaceTensors.from_set(splits[u], norm.size)
                              for u in ("Training", "PublicTest", "PrivateTest"))
    optimizer, scheduler = _sgd_with_steps(model, optim_cfg)
    epochs = optim_cfg["epochs"]
    batch_size = optim_cfg["batch_size"]
    log.info("train-denseface: %d train / %d public / %d private faces, %d classes, network %s (feature %d-d), "
             "%d epochs on %s", len(train), len(public), len(private), len(fer_set.classes), network,
             network.feature_dim, epochs, device)
    bar = tqdm(total=epochs * math.ceil(len(train) / batch_size), desc="train-denseface", unit="batch",
               disable=not progress, mininterval=1.0)

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(train), generator=generator)
        for lo in range(0, len(train), batch_size):
            idx = order[lo:lo + batch_size]
            x = normalise(train.images[idx], norm)
            if aug_cfg["enabled"]:
                x = augment(x, aug_cfg, augment_generator)
            bar.update(1)
            yield x.to(device, memory_format=torch.channels_last), train.targets[idx].to(device)

    def step(batch: tuple[Tensor, Tensor], epoch: int) -> dict[str, Tensor]:
        x, target = batch
        return {"loss": F.cross_entropy(model(x), target)}

    def on_public() -> dict[str, float]:
        scores = evaluate(model, public, norm, optim_cfg["eval_batch_size"], device)
        bar.set_postfix(public_acc=f"{scores['accuracy']:.3f}")
        return scores

    start = time.perf_counter()
    result = fit(model, epochs=epochs, batches=batches, step=step, optimizer=optimizer, evaluate=on_public,
                 select="accuracy", scheduler=scheduler, describe="train-denseface")
    bar.close()
    model.load_state_dict(result.best_state)
    model.eval()
    seconds = time.perf_counter() - start
    public_scores = evaluate(model, public, norm, optim_cfg["eval_batch_size"], device)
    private_scores = evaluate(model, private, norm, optim_cfg["eval_batch_size"], device)
    metrics = {
        "public_test": {"accuracy": public_scores["accuracy"], "loss": public_scores["loss"], "faces": len(public)},
        "private_test": {"accuracy": private_scores["accuracy"], "loss": private_scores["loss"],
                         "faces": len(private)},
        **_run_facts(fer_set, config, network, result, len(train)),
    }
    log.info("train-denseface: best epoch %d, PublicTest accuracy %.4f, PrivateTest accuracy %.4f, %.0f s",
             result.best_epoch, public_scores["accuracy"], private_scores["accuracy"], seconds)
    model = model.cpu().to(memory_format=torch.contiguous_format)
    return TrainingOutcome(model, list(fer_set.classes), norm, metrics, result.history)


def train_denseface(config: dict[str, Any], checkpoint_path: str | Path, metrics_path: str | Path,
                    history_path: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """The stage: read the FER files named in config.data, train, write checkpoint + metrics (+ history)."""
    check_config(config)
    data = config["data"]
    fer_set = read_fer(data["fer2013"], data["ferplus"], data)
    outcome = train_on_set(fer_set, config, progress=progress)
    public = outcome.metrics["public_test"]["accuracy"]
    save_checkpoint(checkpoint_path, outcome.model, outcome.classes, outcome.normalisation,
                    extra={"best_epoch": outcome.metrics["best_epoch"], "public_test_accuracy": public,
                           "targets": data["targets"], "seed": int(config["seed"])})
    metrics_path = Path(metrics_path)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(outcome.metrics, indent=2, sort_keys=True) + "\n")
    if history_path is not None:
        history_path = Path(history_path)
        history_path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in outcome.history]
        history_path.write_text(json.dumps(rows, indent=2) + "\n")
    return outcome.metrics
