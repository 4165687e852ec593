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
`train_and_evaluate` is the fold's training loop (utt_fusion's recipe: Adam, constant-then-decay schedule,
selection on validation UA) over a cross-corpus protocol's parts; pipeline/cross_training.py hands them over.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.batches import FoldTensors, prepare_fold
from models.data import UtteranceView
from models.encoders import ModalityInputs, UtteranceEncoders
from models.recipe import ItemBatch, Parts, condition_plan, start, train_and_test
from models.trainer import FoldOutcome, kaiming_init
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

    def __init__(self, dims: Mapping[str, int], n_classes: int, n_cultures: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        if n_cultures < 2:
            raise ValueError(f"a culture discriminator needs at least 2 cultures (corpora), got {n_cultures}")
        self.encoders = UtteranceEncoders(dims, config["encoder"])
        width = self.encoders.output_dim
        self.classifier = Classifier(width, config["classifier_hidden"], n_classes, float(config["dropout"]))
        self.reversal = GradientReversal(0.0)
        self.discriminator = Classifier(width, config["discriminator_hidden"], n_cultures, float(config["dropout"]))
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


VARIANTS = ("adversarial", "source_only", "in_corpus")


def _zero_labels(part: Parts) -> UtteranceView:
    """The adaptation pool with every label replaced by 0: `prepare_fold` keeps labelled rows only, and whatever
    a target row's label holds must never reach the loss (culture_losses reads no target label either)."""
    view = UtteranceView.of(part)
    return UtteranceView(view.source, view.rows, torch.zeros_like(view.labels))


@torch.no_grad()
def embed(model: CultureAdversarial, data: FoldTensors, batch_size: int, trim: bool) -> Tensor:
    """The fused embedding [N, width] of every row of `data` (full modalities)."""
    model.eval()
    parts = [model.encoders(data.inputs(torch.arange(s, min(s + batch_size, len(data)), device=data.rows.device),
                                        trim=trim)) for s in range(0, len(data), batch_size)]
    return torch.cat(parts) if parts else torch.zeros(0, model.encoders.output_dim)


def _check_variant(config: Mapping[str, Any], train: Parts, adaptation: Parts | None,
                   train_cultures: Tensor | None) -> tuple[str, bool]:
    """The variant and whether it adapts (needs the target's pool and a culture id per training row)."""
    variant = config["variant"]
    if variant not in VARIANTS:
        raise ValueError(f"culture: variant must be one of {VARIANTS}, got {variant!r}")
    adversarial = variant != "in_corpus"
    if adversarial and (adaptation is None or train_cultures is None or len(train_cultures) != len(train)):
        raise ValueError(f"culture ({variant}): needs the adaptation pool and one culture id per training row")
    return variant, adversarial


def train_and_evaluate(train: Parts, val: Parts, test: Parts, config: dict, *, seed: int, device: torch.device,
                       adaptation: Parts | None = None, train_cultures: Tensor | None = None,
                       target_culture: int = 1, n_cultures: int = 2) -> FoldOutcome:
    """One fold and seed of culture_adv / culture_source_only (labelled `train` from the source corpora, whose
    culture ids are `train_cultures`, and the unlabelled target `adaptation` pool, culture `target_culture`) or of
    culture_in_corpus (the target's own labelled parts, no pool). Selected on `val` UA; tested on `test`.

    Each step draws a target batch of the source batch's size from the pool; the reversal weight follows DANN's
    schedule times `reversal.max_weight` (0 for source_only, whose discriminator still learns). The adaptation
    pool's labels are never read (replaced by 0 before anything else happens)."""
    variant, adversarial = _check_variant(config, train, adaptation, train_cultures)
    generator = start(config, seed, f"culture_{variant}")
    splits = {"train": train, "val": val, "test": test}
    if adversarial:
        splits["adaptation"] = _zero_labels(adaptation)
    folds = prepare_fold(splits, int(config["n_classes"]), config["frames"], config["normalise"], device)
    plan = condition_plan(config, folds["train"].modalities, f"culture_{variant}")
    model = CultureAdversarial(folds["train"].dims, int(config["n_classes"]), max(n_cultures, 2), config).to(device)
    trim = not config["encoder"]["pool_over_padding"]
    source, pool = folds["train"], folds.get("adaptation")
    batch_size = int(config["batch_size"])
    epochs = int(config["epochs_constant"]) + int(config["epochs_decay"])
    steps = math.ceil(len(source) * len(plan.train) / batch_size)
    maximum = float(config["reversal"]["max_weight"]) if variant == "adversarial" else 0.0
    schedule = reversal_schedule(epochs, steps, float(config["reversal"]["gamma"]), maximum)
    cultures = train_cultures.to(device) if train_cultures is not None else None
    counter = [0]

    def step(batch: ItemBatch, epoch: int) -> dict[str, Tensor]:
        emotion_src, culture_src = model(source.inputs(batch.utterances, batch.presence, trim=trim))
        if pool is None:
            return {"loss": F.cross_entropy(emotion_src, source.labels[batch.utterances])}
        model.reversal.weight = schedule[min(counter[0], len(schedule) - 1)]
        counter[0] += 1
        rows = torch.randint(len(pool), (len(batch.utterances),), generator=generator).to(device)
        emotion_tgt, culture_tgt = model(pool.inputs(rows, trim=trim))
        n_src, n_tgt = len(batch.utterances), len(rows)
        losses = culture_losses(
            torch.cat([emotion_src, emotion_tgt]), torch.cat([culture_src, culture_tgt]),
            torch.cat([source.labels[batch.utterances], pool.labels[rows]]),
            torch.cat([cultures[batch.utterances], torch.full((n_tgt,), target_culture, device=device)]),
            torch.arange(n_src + n_tgt, device=device) < n_src)
        weighted = losses["emotion"] + float(config["culture_weight"]) * (losses["loss"] - losses["emotion"])
        cultures_batch = torch.cat([cultures[batch.utterances], torch.full((n_tgt,), target_culture, device=device)])
        accuracy = culture_accuracy(torch.cat([culture_src, culture_tgt]).detach(), cultures_batch)
        return {"loss": weighted, "emotion": losses["emotion"], "culture": losses["culture"],
                "culture_accuracy": torch.tensor(accuracy), "reversal_weight": torch.tensor(model.reversal.weight)}

    enc = model.encoders
    outcome = train_and_test(model, enc, model.classifier, folds, config, step=step,
                             networks=[*enc.parts(), model.classifier, model.discriminator], generator=generator,
                             device=device, describe=f"culture_{variant}", plan=plan)
    if adversarial:
        outcome.extras.update(_culture_extras(model, folds, cultures, target_culture, config, trim))
        # the discriminator on the training batches of the last epoch (the selected epoch may be an early one)
        outcome.extras["culture_accuracy_last_epoch"] = float(outcome.history[-1]["train_culture_accuracy"])
    return outcome


def _culture_extras(model: CultureAdversarial, folds: Mapping[str, FoldTensors], cultures: Tensor | None,
                    target_culture: int, config: Mapping[str, Any], trim: bool) -> dict[str, Any]:
    """The selected network's culture discriminator accuracy on the source validation part and the target test
    part together (balanced: the mean of the two parts' accuracies), and their embeddings for the t-SNE."""
    size = int(config["eval_batch_size"])
    source, target = embed(model, folds["val"], size, trim), embed(model, folds["test"], size, trim)
    with torch.no_grad():
        src_hit = model.discriminator(source).argmax(-1) != target_culture
        tgt_hit = model.discriminator(target).argmax(-1) == target_culture
    return {"culture_accuracy": 0.5 * (float(src_hit.float().mean()) + float(tgt_hit.float().mean())),
            "embeddings_source": source.cpu().numpy(), "embeddings_target": target.cpu().numpy()}
