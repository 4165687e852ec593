"""SSMM (Liang, Li, Jin, ACM MM 2020): semi-supervised multimodal emotion recognition by cross-modal
distribution matching. No public code exists; this is the formulation of docs/models.md, "SSMM".

One deep autoencoder per modality maps an utterance-level vector (a pooled sequence) to a latent; a classifier
reads the latents concatenated in fusion order A, L, V. Per step a labelled batch and an unlabelled batch of equal
size give

    CE(labelled) + recon_weight x sum over modalities of reconstruction MSE (both batches)
                 + mmd_weight x sum over modality pairs of multi-kernel MMD between latents (both batches)
                 + pseudo_label_weight x CE(unlabelled, the network's own confident predictions)
                 [- mismatch_weight x sum over pairs of MMD(matched pairs, mismatched pairs), off by default]

where the unlabelled batch's terms switch on after `warmup_epochs` of supervised training. The supervised-only
variant is the same network and the same loss on labelled batches only, with its input normalisation taken from the
labelled utterances alone: the difference between the two is what the unlabelled data contributes.

The pseudo-label term is ours, not in docs/models.md (`pseudo_label_weight: 0` gives that loss exactly). The fused
classifier's prediction for an unlabelled utterance, when its probability reaches `pseudo_label_threshold`, becomes
that utterance's target (no gradient through the target; rows below the threshold add nothing; the mean runs over
the whole batch, as in FixMatch). It reads the paper's premise, one emotion per utterance behind all its
modalities, as a label the three modalities together give the utterance. Why: reconstruction and MMD shape the
latents but not the decision boundary. With a few dozen labels the network fits them within an epoch or two and
then overfits, and those terms do not stop it: on the demo at 10% labels, test UA averaged over 8 folds x 3 seeds
falls from 0.81 after the first epoch to 0.73 after the last with them and to 0.71 without, so the selected
checkpoints tie (0.800 vs 0.801). Confident pseudo-labels carry the labelled boundary to the unlabelled
utterances, which is what a handful of labels lacks (see README, "SSMM").

The network is built for the modalities the data holds (any non-empty subset of audio, visual, text): one
autoencoder per modality, MMD over each pair of them (none over one modality, where the loss keeps CE,
reconstruction and the pseudo-label term), and the metrics are written under the full condition over them ("azz"
for audio alone, "avl" for all three).

Missing modalities (sequence length 0) pool to zero vectors. They are not evidence about the modality's
distribution, so they are left out of that modality's reconstruction term and out of every MMD term that involves
it; the classifier still reads them (as the normalised-mean input, i.e. zeros after normalisation).

Labels: a label of -1 (`models.data.UNLABELLED`) marks an utterance whose label is hidden or absent. Such rows of
the training set and every row of the `unlabelled` set (whatever label it carries) form the unlabelled stream and
never reach the loss.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.condition_names import full_condition
from models.data import UNLABELLED, UtteranceSet
from models.metrics import classification_metrics
from models.trainer import FitResult, FoldOutcome, adam, fit, kaiming_init, seed_everything

log = logging.getLogger(__name__)
USES_UNLABELLED = True  # train_and_evaluate takes the fold's unlabelled pool (`unlabelled=`) besides its parts

FUSION_ORDER = ("audio", "text", "visual")  # A, L, V as everywhere in the project (over the modalities present)
VARIANTS = ("ssmm", "supervised")
EXP_FLOOR = 50.0  # Gaussian-kernel exponents are clamped at -EXP_FLOOR (see multi_kernel_mmd)
REQUIRED_KEYS = (
    "variant", "n_classes", "pooling", "normalise", "hidden", "latent", "classifier_hidden", "dropout", "epochs",
    "warmup_epochs", "batch_size", "lr", "betas", "weight_decay", "clip_norm", "recon_weight", "mmd_weight",
    "mmd_kernel_scales", "mismatch_mmd", "mismatch_weight", "kaiming_init", "select_after_warmup",
    "pseudo_label_weight", "pseudo_label_threshold",
)


# ------------------------------------------------------------------------------------------------------- MMD
def pairwise_sq_distances(z: Tensor) -> Tensor:
    """[N, N] squared Euclidean distances between the rows of z."""
    sq = (z * z).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp_min(0.0)


def multi_kernel_mmd(x: Tensor, y: Tensor, scales: Sequence[float]) -> Tensor:
    """Biased squared MMD between the samples x [n, d] and y [m, d] under a sum of Gaussian kernels
    exp(-d^2 / (b s)) for s in `scales`, b = the mean pairwise squared distance in the joint sample (off the
    diagonal). b is a statistic of the batch, not a path for gradients (detached, as multi-kernel MMD is usually
    computed). Invariant to the order of either sample."""
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"MMD needs two [n, d] samples of one width, got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if n == 0 or m == 0:
        raise ValueError("MMD needs at least one row on each side")
    joint = torch.cat([x, y], 0)
    d2 = pairwise_sq_distances(joint)
    total = n + m
    bandwidth = (d2.detach().sum() / max(total * total - total, 1)).clamp_min(torch.finfo(d2.dtype).tiny)
    # exponents below -EXP_FLOOR are clamped: exp of them is < 2e-22, nothing to the MMD, but left alone they
    # underflow to subnormal floats, which CPUs compute tens of times more slowly
    kernel = sum(torch.exp((-d2 / (bandwidth * float(s))).clamp_min(-EXP_FLOOR)) for s in scales)
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2.0 * kernel[:n, n:].mean()


def mismatched_pairs_mmd(zp: Tensor, zq: Tensor, scales: Sequence[float], generator: torch.Generator) -> Tensor:
    """The lab's subtracted term, in our formulation: MMD between matched pairs [zp_i, zq_i] and deliberately
    mismatched pairs [zp_i, zq_j], j != i (a random derangement). Subtracting it rewards latents whose pairing
    across modalities carries information, which plain distribution matching ignores. Rows must be aligned."""
    n = zp.shape[0]
    order = torch.randperm(n, generator=generator).to(zp.device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)  # order[i] is paired with order[i+1]: nobody keeps its own partner
    return multi_kernel_mmd(torch.cat([zp, zq], 1), torch.cat([zp, zq[partner]], 1), scales)


# ---------------------------------------------------------------------------------------------------- inputs
@dataclass
class PooledInputs:
    """Utterance-level vectors per modality [N, D_m] and presence [N] bool (false = modality missing)."""

    vectors: dict[str, Tensor]
    present: dict[str, Tensor]

    def __len__(self) -> int:
        return int(next(iter(self.vectors.values())).shape[0])

    def index(self, idx: Tensor) -> PooledInputs:
        return PooledInputs({m: v[idx] for m, v in self.vectors.items()}, {m: p[idx] for m, p in self.present.items()})

    def to(self, device: torch.device) -> PooledInputs:
        return PooledInputs({m: v.to(device) for m, v in self.vectors.items()},
                            {m: p.to(device) for m, p in self.present.items()})

    @staticmethod
    def concat(parts: Sequence[PooledInputs]) -> PooledInputs:
        names = list(parts[0].vectors)
        return PooledInputs({m: torch.cat([p.vectors[m] for p in parts]) for m in names},
                            {m: torch.cat([p.present[m] for p in parts]) for m in names})


def fusion_order(modalities: Sequence[str]) -> tuple[str, ...]:
    """`modalities` in the fusion order A, L, V."""
    return tuple(m for m in FUSION_ORDER if m in modalities)


def pool_utterances(data: UtteranceSet, how: str) -> PooledInputs:
    """Pool every modality `data` holds over time (zeros where the modality is missing), in fusion order."""
    order = fusion_order(data.modalities)
    return PooledInputs({m: data.modality(m).pooled(how).float() for m in order},
                        {m: data.modality(m).lengths > 0 for m in order})


# ----------------------------------------------------------------------------------------------------- model
def _mlp(sizes: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear layers through `sizes`, ReLU (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class ModalityAutoencoder(nn.Module):
    """D -> hidden... -> latent (ReLU between, linear code) and the mirrored decoder back to D (linear output)."""

    def __init__(self, dim: int, hidden: Sequence[int], latent: int) -> None:
        super().__init__()
        sizes = [dim, *hidden, latent]
        self.encoder = _mlp(sizes)
        self.decoder = _mlp(sizes[::-1])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)


class SSMMNet(nn.Module):
    """Per-modality autoencoders (one for each modality of `dims`), input normalisation (buffers, saved with the
    weights) and a classifier on the latents concatenated A, L, V."""

    def __init__(self, dims: Mapping[str, int], n_classes: int, hidden: Sequence[int], latent: int,
                 classifier_hidden: Sequence[int], dropout: float) -> None:
        super().__init__()
        self.modalities = fusion_order(list(dims))
        if not self.modalities or len(self.modalities) != len(dims):
            raise ValueError(f"ssmm needs feature widths for a non-empty subset of {list(FUSION_ORDER)}, "
                             f"got {dict(dims)}")
        self.autoencoders = nn.ModuleDict({m: ModalityAutoencoder(dims[m], hidden, latent) for m in self.modalities})
        self.classifier = _mlp([latent * len(self.modalities), *classifier_hidden, n_classes], dropout)
        for m in self.modalities:
            self.register_buffer(f"{m}_mean", torch.zeros(dims[m]))
            self.register_buffer(f"{m}_std", torch.ones(dims[m]))

    def set_normalisation(self, inputs: PooledInputs) -> None:
        """Mean/std per feature over the present rows (std 0 -> 1); identity for a modality never present."""
        for m in self.modalities:
            rows = inputs.vectors[m][inputs.present[m]]
            mean = rows.mean(0) if len(rows) else torch.zeros_like(getattr(self, f"{m}_mean"))
            std = rows.std(0, unbiased=False) if len(rows) else torch.ones_like(mean)
            getattr(self, f"{m}_mean").copy_(mean)
            getattr(self, f"{m}_std").copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def normalised(self, inputs: PooledInputs) -> dict[str, Tensor]:
        """z-scored vectors; a missing modality is all zeros (the training mean)."""
        out = {}
        for m in self.modalities:
            x = (inputs.vectors[m] - getattr(self, f"{m}_mean")) / getattr(self, f"{m}_std")
            out[m] = x * inputs.present[m].unsqueeze(1).to(x.dtype)
        return out

    def encode(self, inputs: PooledInputs) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """(normalised inputs, latents, reconstructions) per modality."""
        x = self.normalised(inputs)
        latents, recons = {}, {}
        for m in self.modalities:
            latents[m], recons[m] = self.autoencoders[m](x[m])
        return x, latents, recons

    def classify(self, latents: Mapping[str, Tensor]) -> Tensor:
        return self.classifier(torch.cat([latents[m] for m in self.modalities], 1))

    def forward(self, inputs: PooledInputs) -> Tensor:
        return self.classify(self.encode(inputs)[1])


# ------------------------------------------------------------------------------------------------------ loss
def unsupervised_terms(x: Mapping[str, Tensor], latents: Mapping[str, Tensor], recons: Mapping[str, Tensor],
                       present: Mapping[str, Tensor], config: Mapping[str, Any],
                       generator: torch.Generator) -> dict[str, Tensor]:
    """Reconstruction MSE summed over modalities and MMD summed over modality pairs for one batch, each computed on
    the rows where the modality (or both modalities of the pair) is present; a term with too few rows is 0."""
    device = next(iter(latents.values())).device
    order = fusion_order(list(latents))
    recon = torch.zeros((), device=device)
    for m in order:
        rows = present[m]
        if rows.any():
            recon = recon + F.mse_loss(recons[m][rows], x[m][rows])
    mmd = torch.zeros((), device=device)
    mismatch = torch.zeros((), device=device)
    scales = [float(s) for s in config["mmd_kernel_scales"]]
    for i, p in enumerate(order):
        for q in order[i + 1:]:
            if int(present[p].sum()) >= 2 and int(present[q].sum()) >= 2:
                mmd = mmd + multi_kernel_mmd(latents[p][present[p]], latents[q][present[q]], scales)
            both = present[p] & present[q]
            if config["mismatch_mmd"] and int(both.sum()) >= 2:
                mismatch = mismatch + mismatched_pairs_mmd(latents[p][both], latents[q][both], scales, generator)
    return {"recon": recon, "mmd": mmd, "mismatch": mismatch}


def pseudo_label_term(logits: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """(CE of `logits` [N >= 1, C] against their own argmax on the rows whose top probability reaches `threshold`,
    averaged over all N rows; the share of such rows). The targets carry no gradient: the term sharpens confident
    predictions, it cannot move a target towards the prediction."""
    confidence, target = logits.detach().softmax(1).max(1)
    confident = (confidence >= threshold).to(logits.dtype)
    ce = F.cross_entropy(logits, target, reduction="none")
    return (ce * confident).mean(), confident.mean()


def ssmm_losses(model: SSMMNet, labelled: PooledInputs, labels: Tensor, unlabelled: PooledInputs | None,
                epoch: int, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, Tensor]:
    """The per-step loss and its parts. `unlabelled` is ignored (not even encoded) before `warmup_epochs` and in
    the supervised variant, so its terms are exactly zero there."""
    if labels.numel() != len(labelled):
        raise ValueError(f"{labels.numel()} labels for a labelled batch of {len(labelled)}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("a hidden label (-1) reached the labelled batch; it belongs to the unlabelled stream")
    x, latents, recons = model.encode(labelled)
    ce = F.cross_entropy(model.classify(latents), labels)
    lab = unsupervised_terms(x, latents, recons, labelled.present, config, generator)
    zero = torch.zeros((), device=ce.device)
    unl = {"recon": zero, "mmd": zero, "mismatch": zero}
    pseudo, pseudo_share = zero, zero
    if unlabelled is not None and config["variant"] == "ssmm" and epoch >= config["warmup_epochs"] and len(unlabelled):
        ux, ulatents, urecons = model.encode(unlabelled)
        unl = unsupervised_terms(ux, ulatents, urecons, unlabelled.present, config, generator)
        if float(config["pseudo_label_weight"]) > 0:
            pseudo, pseudo_share = pseudo_label_term(model.classify(ulatents),
                                                     float(config["pseudo_label_threshold"]))
    loss = (ce + config["recon_weight"] * (lab["recon"] + unl["recon"])
            + config["mmd_weight"] * (lab["mmd"] + unl["mmd"])
            + float(config["pseudo_label_weight"]) * pseudo
            - config["mismatch_weight"] * (lab["mismatch"] + unl["mismatch"]))
    return {"loss": loss, "ce": ce, "recon_labelled": lab["recon"], "recon_unlabelled": unl["recon"],
            "mmd_labelled": lab["mmd"], "mmd_unlabelled": unl["mmd"],
            "mismatch_labelled": lab["mismatch"], "mismatch_unlabelled": unl["mismatch"],
            "pseudo_label": pseudo, "pseudo_labelled_share": pseudo_share}


# ------------------------------------------------------------------------------------------------- training
def check_config(config: Mapping[str, Any]) -> None:
    """Fail before any work on a missing or inconsistent setting."""
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise ValueError(f"ssmm config lacks {missing} (see params.yaml, models.ssmm)")
    if config["pooling"] not in ("mean", "max"):
        raise ValueError(f"ssmm pooling must be 'mean' or 'max', got {config['pooling']!r}")
    if config["variant"] not in VARIANTS:
        raise ValueError(f"ssmm variant must be one of {VARIANTS}, got {config['variant']!r}")
    for key in ("n_classes", "latent", "epochs", "batch_size"):
        if int(config[key]) < 1:
            raise ValueError(f"ssmm {key} must be >= 1, got {config[key]}")
    if int(config["warmup_epochs"]) < 0:
        raise ValueError(f"ssmm warmup_epochs must be >= 0, got {config['warmup_epochs']}")
    if config["select_after_warmup"] and int(config["warmup_epochs"]) >= int(config["epochs"]):
        raise ValueError(f"ssmm select_after_warmup needs epochs ({config['epochs']}) > warmup_epochs "
                         f"({config['warmup_epochs']})")
    if not config["mmd_kernel_scales"] or any(float(s) <= 0 for s in config["mmd_kernel_scales"]):
        raise ValueError(f"ssmm mmd_kernel_scales must be positive, got {config['mmd_kernel_scales']}")
    if float(config["pseudo_label_weight"]) < 0:
        raise ValueError(f"ssmm pseudo_label_weight must be >= 0, got {config['pseudo_label_weight']}")
    if not 0.0 < float(config["pseudo_label_threshold"]) <= 1.0:
        raise ValueError(f"ssmm pseudo_label_threshold must lie in (0, 1], got {config['pseudo_label_threshold']}")
    if not 0.0 <= float(config["dropout"]) < 1.0:
        raise ValueError(f"ssmm dropout must lie in [0, 1), got {config['dropout']}")


def _cycled(n: int, count: int, generator: torch.Generator) -> Tensor:
    """`count` indices into range(n): successive fresh permutations, so every row comes once before any repeats."""
    reps = math.ceil(count / n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(reps)])[:count]


def predict(model: SSMMNet, inputs: PooledInputs, chunk: int) -> Tensor:
    """Class predictions [N] in eval mode, in chunks of `chunk` rows."""
    model.eval()
    with torch.no_grad():
        preds = [model(inputs.index(torch.arange(s, min(s + chunk, len(inputs)))).to(_device_of(model))).argmax(1)
                 for s in range(0, len(inputs), chunk)]
    return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.long)


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _labelled_metrics(model: SSMMNet, inputs: PooledInputs, labels: Tensor, n_classes: int, chunk: int,
                      ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    keep = (labels != UNLABELLED).nonzero().flatten()
    y_true = labels[keep].cpu().numpy()
    y_pred = predict(model, inputs.index(keep), chunk).numpy()
    return classification_metrics(y_true, y_pred, n_classes), y_true, y_pred


def _check_sets(train: UtteranceSet, val: UtteranceSet, test: UtteranceSet, unlabelled: UtteranceSet | None,
                n_classes: int) -> None:
    """Same feature dims everywhere, labels inside the classes (or -1), something labelled to select on."""
    for name, part in (("val", val), ("test", test), ("unlabelled", unlabelled)):
        if part is not None and part.dims != train.dims:
            raise ValueError(f"{name} feature dims {part.dims} differ from train {train.dims}")
    for name, part in (("train", train), ("val", val), ("test", test)):
        if len(part) and (int(part.labels.max()) >= n_classes or int(part.labels.min()) < UNLABELLED):
            bad = int(part.labels.max()) if int(part.labels.max()) >= n_classes else int(part.labels.min())
            raise ValueError(f"{name} has label {bad} outside the {n_classes} classes (and -1 = no label)")
    if len(val.labelled()) == 0:
        raise ValueError("the validation set has no labelled utterance to select a model on")


def _streams(train: UtteranceSet, unlabelled: UtteranceSet | None, pooling: str,
             ) -> tuple[PooledInputs, Tensor, PooledInputs, int]:
    """The labelled stream (inputs, labels), the unlabelled one (the training rows labelled -1, then every row of
    `unlabelled`) and how many of its rows come from the training set."""
    lab_idx = train.labelled()
    unl_train_idx = (train.labels == UNLABELLED).nonzero().flatten()
    if len(lab_idx) == 0:
        raise ValueError("the training set has no labelled utterance")
    lab_inputs = pool_utterances(train.subset(lab_idx), pooling)
    lab_labels = train.labels[lab_idx].long()
    unl_parts = [pool_utterances(train.subset(unl_train_idx), pooling)]
    if unlabelled is not None and len(unlabelled):
        unl_parts.append(pool_utterances(unlabelled, pooling))
    return lab_inputs, lab_labels, PooledInputs.concat(unl_parts), len(unl_train_idx)


def _build_model(dims: dict[str, int], n_classes: int, config: dict, init_state: dict | None, lab_inputs: PooledInputs,
                 unl_inputs: PooledInputs | None) -> SSMMNet:
    """The network, initialised (or loaded from `init_state`), normalised on the labelled stream, and on the
    unlabelled one too when it is given."""
    model = SSMMNet(dims, n_classes, [int(h) for h in config["hidden"]], int(config["latent"]),
                    [int(h) for h in config["classifier_hidden"]], float(config["dropout"]))
    if config["kaiming_init"]:
        kaiming_init(model)
    if init_state is not None:
        model.load_state_dict(init_state)
    if config["normalise"]:
        model.set_normalisation(PooledInputs.concat([lab_inputs, unl_inputs]) if unl_inputs is not None
                                else lab_inputs)
    return model


@dataclass
class _Streams:
    """The two training streams on the device; `unl_inputs` is None when the unlabelled stream is not trained on
    (its size `n_unl` still sets the epoch length)."""

    lab_inputs: PooledInputs
    lab_labels: Tensor
    unl_inputs: PooledInputs | None
    n_unl: int
    steps: int
    batch: int


def _fit_streams(model: SSMMNet, streams: _Streams, val_inputs: PooledInputs, val_labels: Tensor, config: dict,
                 generator: torch.Generator, device: torch.device, chunk: int) -> FitResult:
    """Train for `epochs` epochs of `steps` paired batches; select the epoch with the best validation UA."""
    n_lab, n_unl, steps, batch = len(streams.lab_inputs), streams.n_unl, streams.steps, streams.batch
    lab_inputs, lab_labels, unl_inputs = streams.lab_inputs, streams.lab_labels, streams.unl_inputs
    n_classes = int(config["n_classes"])

    def batches(epoch: int) -> Iterator[tuple[Tensor, Tensor | None]]:
        lab_order = _cycled(n_lab, steps * batch, generator).view(steps, batch)
        unl_order = _cycled(n_unl, steps * batch, generator).view(steps, batch) if n_unl else None
        for s in range(steps):
            yield lab_order[s], (unl_order[s] if unl_order is not None else None)

    def step(idx: tuple[Tensor, Tensor | None], epoch: int) -> dict[str, Tensor]:
        li, ui = idx
        li = li.to(device)
        unl = unl_inputs.index(ui.to(device)) if unl_inputs is not None and ui is not None else None
        return ssmm_losses(model, lab_inputs.index(li), lab_labels[li], unl, epoch, config, generator)

    def evaluate() -> dict[str, float]:
        return _labelled_metrics(model, val_inputs, val_labels, n_classes, chunk)[0]

    optimizer = adam(model.parameters(), lr=float(config["lr"]), betas=tuple(float(b) for b in config["betas"]),
                     weight_decay=float(config["weight_decay"]))
    clip = config["clip_norm"]
    return fit(model, epochs=int(config["epochs"]), batches=batches, step=step, optimizer=optimizer,
               evaluate=evaluate, select="ua", clip_norm=float(clip) if clip else None,
               describe=f"ssmm-{config['variant']}",
               select_from=int(config["warmup_epochs"]) if config["select_after_warmup"] else 0)


def train_and_evaluate(train: UtteranceSet, val: UtteranceSet, test: UtteranceSet, config: dict, *, seed: int,
                       device: torch.device, init_state: dict | None = None,
                       unlabelled: UtteranceSet | None = None) -> FoldOutcome:
    """Train SSMM (or its supervised-only variant, `config["variant"]`) on one fold; select the epoch with the best
    validation UA; report WA, UA, macro and weighted F1 on the full-input test set (the full condition over the
    modalities the sets hold: "avl" for all three).

    Streams: labelled = the training rows with a label >= 0; unlabelled = the training rows labelled -1 followed by
    every row of `unlabelled`. Both batches have `batch_size` rows, each stream cycling through fresh permutations
    (a stream smaller than a batch repeats rows within it); an epoch is ceil(max(#labelled, #unlabelled) /
    batch_size) steps, one pass over the larger stream, in both variants, so the two variants take the same
    optimiser steps and see the same labelled batches. The supervised variant sees nothing of the unlabelled stream
    but its size: its input normalisation comes from the labelled rows alone, SSMM's from both streams (no labels
    involved; `normalise: false` keeps the raw scale); either is recomputed even with `init_state`.
    """
    check_config(config)
    start = time.perf_counter()
    n_classes = int(config["n_classes"])
    _check_sets(train, val, test, unlabelled, n_classes)

    generator = seed_everything(seed)
    pooling = config["pooling"]
    lab_inputs, lab_labels, unl_inputs, n_unl_train = _streams(train, unlabelled, pooling)
    n_lab, n_unl = len(lab_inputs), len(unl_inputs)
    use_unlabelled = config["variant"] == "ssmm" and n_unl > 0
    if config["variant"] == "ssmm" and n_unl == 0:
        log.warning("ssmm: no unlabelled utterance; training reduces to the supervised variant")

    model = _build_model(train.dims, n_classes, config, init_state, lab_inputs, unl_inputs if use_unlabelled else None)
    model.to(device)
    lab_inputs, lab_labels, unl_inputs = lab_inputs.to(device), lab_labels.to(device), unl_inputs.to(device)
    val_inputs, test_inputs = pool_utterances(val, pooling), pool_utterances(test, pooling)

    batch = int(config["batch_size"])
    steps = math.ceil(max(n_lab, n_unl) / batch)
    log.info("ssmm %s seed %d: %d labelled, %d unlabelled (%d in train), batch %d, %d steps/epoch, %d epochs on %s",
             config["variant"], seed, n_lab, n_unl, n_unl_train, batch, steps, config["epochs"], device)
    chunk = max(int(config["batch_size"]), 1024)
    streams = _Streams(lab_inputs, lab_labels, unl_inputs if use_unlabelled else None, n_unl, steps, batch)
    result = _fit_streams(model, streams, val_inputs, val.labels, config, generator, device, chunk)
    model.load_state_dict(result.best_state)
    metrics, y_true, y_pred = _labelled_metrics(model, test_inputs, test.labels, n_classes, chunk)
    full = full_condition(train.modalities)
    seconds = time.perf_counter() - start
    log.info("ssmm %s seed %d: best epoch %d (val UA %.4f), test UA %.4f WA %.4f, %.1f s", config["variant"], seed,
             result.best_epoch, result.best_score, metrics["ua"], metrics["wa"], seconds)
    state = {k: v.detach().cpu().clone() for k, v in result.best_state.items()}
    return FoldOutcome(
        metrics={full: metrics}, state=state, history=result.history, predictions={full: (y_true, y_pred)},
        extras={"best_epoch": result.best_epoch, "best_val_ua": result.best_score, "variant": config["variant"],
                "n_labelled": n_lab, "n_unlabelled": n_unl, "batch_size": batch, "steps_per_epoch": steps,
                "seconds": seconds})
