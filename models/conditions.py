"""MMIN's missing-modality protocol as tensor operations: masking, the x6 expansion, the per-read random draw
used in training, and the metrics per condition plus "average" (the pooled six missing conditions).

A condition is a presence row over (audio, visual, text) (`models.data.CONDITIONS`); a missing modality is its
whole sequence multiplied by zero with its length kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from models.condition_names import AVERAGE, MISSING_CONDITIONS, MODALITIES
from models.encoders import ModalityInputs
from models.metrics import classification_metrics

REPORTED_CONDITIONS = (*MISSING_CONDITIONS, "avl")


def mask_inputs(inputs: ModalityInputs, presence: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """Multiply each modality's sequences by its presence column ([B, 3] in audio, visual, text order); the
    columns of modalities `inputs` does not hold are ignored."""
    if presence.ndim != 2 or presence.shape[1] != len(MODALITIES):
        raise ValueError(f"presence must be [B, {len(MODALITIES)}], got {tuple(presence.shape)}")
    masked = {}
    for column, name in enumerate(MODALITIES):
        if name not in inputs:
            continue
        values, lengths = inputs[name]
        scale = presence[:, column].to(values.dtype).reshape(-1, 1, 1)
        masked[name] = (values * scale, lengths)
    return masked


def complement(presence: Tensor) -> Tensor:
    """The complementary condition: present modalities dropped, missing ones restored (MMIN's forward target)."""
    return 1.0 - presence


def expand_items(n_utterances: int, n_conditions: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """The expanded set: item i is utterance i // n_conditions under condition i % n_conditions."""
    items = torch.arange(n_utterances * n_conditions, device=device)
    return items // n_conditions, items % n_conditions


def epoch_items(n_utterances: int, n_conditions: int, sampling: str,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One training epoch's (utterance, condition index) pairs in shuffled order.

    `expand`: every utterance under every condition (the augmented baseline's x6 set; with one condition, the plain
    training set); `random`: every utterance once with a condition drawn uniformly for this read (MMIN)."""
    if sampling == "expand":
        utterances, conditions = expand_items(n_utterances, n_conditions)
        order = torch.randperm(len(utterances), generator=generator)
        return utterances[order], conditions[order]
    if sampling == "random":
        utterances = torch.randperm(n_utterances, generator=generator)
        return utterances, torch.randint(n_conditions, (n_utterances,), generator=generator)
    raise ValueError(f"train_sampling must be 'expand' or 'random', got {sampling!r}")


def condition_metrics(labels: np.ndarray, predictions: Mapping[str, np.ndarray], n_classes: int,
                      pooled: Sequence[str] = MISSING_CONDITIONS) -> dict[str, dict[str, float]]:
    """Metrics per condition and, when all `pooled` conditions (at least one) are present, "average" = the metrics
    of the pooled set (as MMIN reports it; not the mean of the rows). Over fewer modalities pass their missing
    conditions (`models.condition_names.missing_conditions`); over one modality there are none and no average."""
    metrics = {name: classification_metrics(labels, pred, n_classes) for name, pred in predictions.items()}
    if pooled and all(name in predictions for name in pooled):
        metrics[AVERAGE] = classification_metrics(np.tile(labels, len(pooled)),
                                                  np.concatenate([predictions[n] for n in pooled]), n_classes)
    return metrics
