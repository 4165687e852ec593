"""What every model's training shares: device choice, seeding, the constant-then-linear-decay schedule, a fit
loop with gradient clipping and model selection on a validation metric, and per-epoch history."""

from __future__ import annotations

import copy
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)


def pick_device(preference: str = "auto") -> torch.device:
    """`auto`: CUDA when present, CPU otherwise; or an explicit torch device string."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} requested but CUDA is not available")
    return device


def seed_everything(seed: int, deterministic: bool = True) -> torch.Generator:
    """Seed Python, numpy and torch; with `deterministic`, ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        deterministic_kernels()
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def deterministic_kernels() -> None:
    """`torch.use_deterministic_algorithms(True, warn_only=True)` without its import of `torch._inductor.config`
    (about 900 modules, triton and sympy: 2-3 s and 150 MB of RSS in every training process). Eager kernels read
    only the flag set here; Inductor's own switch is set too when something has already imported it."""
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = True  # type: ignore[attr-defined]
    torch._C._set_deterministic_algorithms(True, warn_only=True)


def adam(params: Iterable[torch.nn.Parameter], **settings: Any) -> torch.optim.Adam:
    """torch's Adam with its multi-tensor update (`foreach`), which torch picks by default only for CUDA tensors.
    On the CPU the same per-tensor kernels run in the same order, so the weights are the same bits
    (tests/test_trainer.py checks it), with less Python per step: SSMM's demo runs take 28% less CPU."""
    return torch.optim.Adam(params, foreach=True, **settings)


def constant_then_linear_decay(optimizer: torch.optim.Optimizer, constant_epochs: int,
                               decay_epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """MMIN's schedule, stepped once per epoch: lr x 1 for `constant_epochs`, then linearly towards 0 over
    `decay_epochs` (factor 1 - (e - constant + 1) / (decay + 1) at epoch e >= constant)."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - constant_epochs) / float(decay_epochs + 1)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def kaiming_init(module: nn.Module) -> None:
    """Kaiming-normal weights and zero biases for Linear and Conv layers (the authors' `init_type='kaiming'`)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass
class FoldOutcome:
    """What a model family's `train_and_evaluate` returns for one fold and seed.

    metrics: condition name (e.g. "avl", "azz", ..., "average") -> {"wa", "ua", "macro_f1", "weighted_f1"};
    predictions: condition -> (y_true, y_pred) integer arrays on the test set; state: the selected weights;
    history: one row per epoch; extras: anything a report may plot (embeddings, ...).
    """

    metrics: dict[str, dict[str, float]]
    state: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    predictions: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitResult:
    best_state: dict[str, Any]
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)


def fit(model: nn.Module, *, epochs: int, batches: Callable[[int], Iterable[Any]],
        step: Callable[[Any, int], dict[str, torch.Tensor]], optimizer: torch.optim.Optimizer,
        evaluate: Callable[[], dict[str, float]], select: str = "ua",
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, clip_norm: float | None = None,
        params_to_clip: Iterable[nn.Parameter] | None = None, loss_key: str = "loss",
        describe: str = "train", clip_groups: Sequence[Iterable[nn.Parameter]] | None = None,
        select_from: int = 0, observe: Callable[[int], dict[str, float]] | None = None) -> FitResult:
    """Train for `epochs`; after each, `evaluate()` on validation; keep the state with the best `select` score
    among epochs `select_from`..epochs-1 (earlier epochs are evaluated and logged, never selected).

    `observe(epoch)`, a separate step after selection (in eval mode, without gradients), scores what must not
    select (e.g. the test set, for a protocol that reports its best epoch); its columns join the epoch's row.

    `step(batch, epoch)` returns a dict of losses; `loss_key` is back-propagated, all are logged as means.
    `clip_groups` clips each group's gradient norm to `clip_norm` separately (the MMIN authors clip per network);
    otherwise one norm over `params_to_clip` (default: all parameters).
    """
    if clip_groups is not None and params_to_clip is not None:
        raise ValueError("give params_to_clip or clip_groups, not both")
    if not 0 <= select_from < epochs:
        raise ValueError(f"select_from={select_from} leaves no epoch to select among {epochs}")
    best_state = copy.deepcopy(model.state_dict())
    best_score, best_epoch = float("-inf"), -1
    history: list[dict[str, float]] = []
    if clip_groups is not None:
        groups = [list(g) for g in clip_groups]
    else:
        groups = [list(params_to_clip) if params_to_clip is not None else list(model.parameters())]
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        sums: dict[str, float] = {}
        n_batches = 0
        for batch in batches(epoch):
            losses = step(batch, epoch)
            optimizer.zero_grad(set_to_none=True)
            losses[loss_key].backward()
            if clip_norm is not None and clip_norm > 0:
                for group in groups:
                    torch.nn.utils.clip_grad_norm_(group, clip_norm)
            optimizer.step()
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            n_batches += 1
        if scheduler is not None:
            scheduler.step()
        model.eval()
        with torch.no_grad():
            scores = evaluate()
        row = {"epoch": epoch, **{f"train_{k}": v / max(n_batches, 1) for k, v in sums.items()},
               **{f"val_{k}": v for k, v in scores.items()}, "seconds": time.perf_counter() - start}
        history.append(row)
        if epoch >= select_from and scores[select] > best_score:
            best_score, best_epoch = scores[select], epoch
            best_state = copy.deepcopy(model.state_dict())
        if observe is not None:
            with torch.no_grad():
                row.update(observe(epoch))
        log.debug("%s epoch %d: %s", describe, epoch, row)
    return FitResult(best_state, best_epoch, best_score, history)
