"""Cross-culture emotion recognition with adversarial learning ("culture_adv"; Liang, Chen, Zhao, Jin, Liu, Lu,
ICASSP 2019, the seed talk's fourth problem).

The utt_fusion network (per-modality encoders, fused A, L, V vector, emotion classifier) plus a culture
discriminator on the fused vector, behind a gradient-reversal layer (Ganin and Lempitsky's DANN):

    z = encoders(x)                                   fused utterance embedding
    emotion = classifier(z)                           cross-entropy on labelled source utterances only
    culture = discriminator(GRL_lambda(z))            cross-entropy on source and target utterances

    loss = CE(emotion, y | source, labelled) + CE(culture, corpus id | source and target)

The reversal layer is the identity forward and multiplies the gradient by -lambda backward, so the discriminator
learns to tell the cultures apart while the encoders learn to make them indistinguishable. lambda follows DANN's
schedule 2 / (1 + exp(-gamma * p)) - 1 over the training progress p in [0, 1] (gamma = 10), scaled by a maximum
weight. With the weight 0 the same network is the source-only baseline ("culture_source_only"): the discriminator
still trains (its accuracy is reported) but no gradient reaches the encoders from it.

Target labels never reach the loss: `culture_losses` masks the emotion term to source rows with a label.
This module holds the network and its losses; the fold's training loop comes with the cross-corpus protocol.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.encoders import ModalityInputs, UtteranceEncoders
from models.trainer import kaiming_init
from models.utt_fusion import Classifier


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: float) -> Tensor:
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad.neg() * ctx.weight, None


class GradientReversal(nn.Module):
    """Identity forward; the gradient times -weight backward. `weight` is set by the training loop each step."""

    def __init__(self, weight: float = 0.0) -> None:
        super().__init__()
        self.weight = float(weight)

    def forward(self, x: Tensor) -> Tensor:
        return _ReverseGradient.apply(x, self.weight)


def dann_weight(progress: float, gamma: float = 10.0, maximum: float = 1.0) -> float:
    """DANN's reversal weight at training progress p in [0, 1]: maximum * (2 / (1 + exp(-gamma p)) - 1)."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"training progress must lie in [0, 1], got {progress}")
    return float(maximum) * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class CultureAdversarial(nn.Module):
    """utt_fusion's encoders and emotion classifier, and a culture discriminator behind gradient reversal."""

    def __init__(self, dims: Mapping[str, int], n_classes: int, n_cultures: int, cfg: Mapping[str, Any]) -> None:
        super().__init__()
        if n_cultures < 2:
            raise ValueError(f"a culture discriminator needs at least 2 cultures (corpora), got {n_cultures}")
        self.encoders = UtteranceEncoders(dims, cfg["encoder"])
        width = self.encoders.output_dim
        self.classifier = Classifier(width, cfg["classifier_hidden"], n_classes, float(cfg["dropout"]))
        self.reversal = GradientReversal(0.0)
        self.discriminator = Classifier(width, cfg["discriminator_hidden"], n_cultures, float(cfg["dropout"]))
        kaiming_init(self)

    def forward(self, inputs: ModalityInputs) -> tuple[Tensor, Tensor]:
        """Emotion logits [B, n_classes] and culture logits [B, n_cultures]."""
        fused = self.encoders(inputs)
        return self.classifier(fused), self.discriminator(self.reversal(fused))


def culture_losses(emotion_logits: Tensor, culture_logits: Tensor, labels: Tensor, cultures: Tensor,
                   is_source: Tensor) -> dict[str, Tensor]:
    """The two terms over one batch of source and target rows.

    labels [B]: emotion classes, -1 where unknown; only source rows with a label enter the emotion term, so
    whatever a target row's label holds never changes the loss. cultures [B]: the corpus (culture) id of each row.
    is_source [B] bool."""
    emotion_rows = is_source & (labels >= 0)
    if bool(emotion_rows.any()):
        emotion = F.cross_entropy(emotion_logits[emotion_rows], labels[emotion_rows])
    else:
        emotion = emotion_logits.sum() * 0.0
    culture = F.cross_entropy(culture_logits, cultures)
    return {"loss": emotion + culture, "emotion": emotion.detach(), "culture": culture.detach()}


def culture_accuracy(culture_logits: Tensor, cultures: Tensor) -> float:
    """Share of rows whose culture the discriminator names correctly (chance = the largest culture's share)."""
    if len(cultures) == 0:
        return float("nan")
    return float((culture_logits.argmax(dim=-1) == cultures).float().mean())


def reversal_schedule(epochs: int, steps_per_epoch: int, gamma: float, maximum: float) -> Sequence[float]:
    """The reversal weight of every optimiser step, p = step / total steps."""
    total = max(epochs * steps_per_epoch - 1, 1)
    return [dann_weight(step / total, gamma, maximum) for step in range(epochs * steps_per_epoch)]
