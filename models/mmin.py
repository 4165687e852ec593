"""MMIN, the Missing Modality Imagination Network (Zhao, Li, Jin, ACL 2021), and its ablations.

The encoders see the masked inputs and give the fused vector h (A, L, V). A cascade residual autoencoder (CRA)
imagines h' from h: block k takes h plus the outputs of blocks 1..k-1, h' = h + the sum of all block outputs
(passed through the authors' 384->384->384 transition MLP when `transition` is on), and the blocks' codes,
concatenated, feed the classifier. Forward imagination: h' regresses onto the embedding that a frozen copy of the
fold's pretrained utt_fusion encoders gives to the complementary input (present modalities dropped, missing ones
restored). Backward imagination: a second CRA maps h' back onto h (detached). Loss = ce x CE + forward x MSE +
backward x MSE. Ablations: `imagination: ae` (one plain autoencoder in each direction) and `cycle: false`.

The network is built for the modalities the data holds. Over two (a corpus with no visual, say) it trains on the two
conditions that drop one of them and imagines the other; over one there is no missing modality to imagine, so it is
refused with a clear error (utt_fusion is the model for one modality).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.batches import FoldTensors
from models.condition_names import missing_conditions
from models.conditions import complement, expand_items, mask_inputs
from models.data import condition_mask
from models.encoders import ModalityInputs, UtteranceEncoders
from models.recipe import ItemBatch, Parts, condition_plan, fold_tensors, require, start, train_and_test
from models.trainer import FoldOutcome, kaiming_init
from models.utt_fusion import Classifier

TAKES_VIEWS = True  # train_and_evaluate reads views (UtteranceSet.view) through models.batches, never copies
MMIN_KEYS = ("imagination", "ae_layers", "n_blocks", "transition", "cycle", "loss_weights", "init", "tsne_max_items")
ENCODER_PREFIX = "encoders."
IMAGINATIONS = ("cra", "ae")  # cascade residual autoencoder; one plain autoencoder (the MMIN-AE ablation)
INITS = ("kaiming", "pytorch")  # the authors' Kaiming-normal init of every Linear/Conv; torch's own defaults
MIN_MODALITIES = 2
NEEDS_TWO_MODALITIES = ("mmin needs at least two modalities: it imagines the missing ones from those present, and "
                        "over one modality ({modalities}) no condition misses anything; train utt_fusion instead")
NEEDS_INIT_STATE = ("mmin needs init_state: the state of the utt_fusion model trained on the same fold "
                    "(FoldOutcome.state of models.utt_fusion.train_and_evaluate)")


def _mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Linear layers through `sizes` with `activation` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (width_in, width_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(width_in, width_out))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class CascadeResidualAE(nn.Module):
    """`n_blocks` autoencoders (input -> layers -> code, LeakyReLU between; code -> reversed layers -> input,
    ReLU between, linear output), wired residually. Returns (imagined vector, concatenated codes)."""

    def __init__(self, input_dim: int, layers: Sequence[int], n_blocks: int, transition: bool) -> None:
        super().__init__()
        if n_blocks < 1 or not layers:
            raise ValueError(f"a CRA needs n_blocks >= 1 and hidden layers, got {n_blocks} and {list(layers)}")
        sizes = [input_dim, *(int(w) for w in layers)]
        self.encoders = nn.ModuleList(_mlp(sizes, nn.LeakyReLU) for _ in range(n_blocks))
        self.decoders = nn.ModuleList(_mlp(sizes[::-1], nn.ReLU) for _ in range(n_blocks))
        self.transition = (nn.Sequential(nn.Linear(input_dim, input_dim), nn.ReLU(), nn.Linear(input_dim, input_dim))
                           if transition else nn.Identity())
        self.code_dim = sizes[-1] * n_blocks

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        block_input, block_output = x, torch.zeros_like(x)
        codes = []
        for encoder, decoder in zip(self.encoders, self.decoders, strict=True):
            block_input = block_input + block_output
            code = encoder(block_input)
            block_output = decoder(code)
            codes.append(code)
        return self.transition(block_input + block_output), torch.cat(codes, dim=-1)


class PlainAE(nn.Module):
    """One autoencoder of the same shape as a CRA block, no residual path (the MMIN-AE ablation)."""

    def __init__(self, input_dim: int, layers: Sequence[int]) -> None:
        super().__init__()
        sizes = [input_dim, *(int(w) for w in layers)]
        self.encoder = _mlp(sizes, nn.LeakyReLU)
        self.decoder = _mlp(sizes[::-1], nn.ReLU)
        self.code_dim = sizes[-1]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        code = self.encoder(x)
        return self.decoder(code), code


@dataclass
class Imagination:
    """One forward pass: fused input h, imagined h', the classifier's input codes and the logits."""

    fused: Tensor
    imagined: Tensor
    codes: Tensor
    logits: Tensor


class MMIN(nn.Module):
    """Encoders on the masked inputs -> forward imagination (CRA or plain AE) -> classifier on the codes; the
    backward imagination (None without the cycle) is used by the loss only."""

    def __init__(self, dims: Mapping[str, int], n_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.encoders = UtteranceEncoders(dims, config["encoder"])
        width = self.encoders.output_dim
        self.forward_imagination = self._autoencoder(width, config)
        self.backward_imagination = self._autoencoder(width, config) if config["cycle"] else None
        self.classifier = Classifier(self.forward_imagination.code_dim, config["classifier_hidden"], n_classes,
                                     float(config["dropout"]))
        if config["init"] == "kaiming":
            kaiming_init(self)
        elif config["init"] != "pytorch":
            raise ValueError(f"mmin: init must be one of {list(INITS)}, got {config['init']!r}")

    @staticmethod
    def _autoencoder(width: int, config: Mapping[str, Any]) -> CascadeResidualAE | PlainAE:
        if config["imagination"] == "cra":
            return CascadeResidualAE(width, config["ae_layers"], int(config["n_blocks"]), bool(config["transition"]))
        if config["imagination"] == "ae":
            return PlainAE(width, config["ae_layers"])
        raise ValueError(f"mmin: imagination must be one of {list(IMAGINATIONS)}, got {config['imagination']!r}")

    def head(self, fused: Tensor) -> Tensor:
        """Logits from fused vectors (what inference needs)."""
        return self.classifier(self.forward_imagination(fused)[1])

    def forward(self, inputs: ModalityInputs) -> Imagination:
        fused = self.encoders(inputs)
        imagined, codes = self.forward_imagination(fused)
        return Imagination(fused, imagined, codes, self.classifier(codes))

    def networks(self) -> list[nn.Module]:
        """The separately clipped parts, as the authors clip them."""
        parts = [*self.encoders.parts(), self.classifier, self.forward_imagination]
        return parts + ([self.backward_imagination] if self.backward_imagination is not None else [])


class ForwardTarget(nn.Module):
    """A frozen copy of the pretrained utt_fusion encoders; always in eval mode, never receives gradients.
    Kept outside MMIN so it is neither optimised nor saved with it."""

    def __init__(self, encoders: UtteranceEncoders) -> None:
        super().__init__()
        self.encoders = copy.deepcopy(encoders).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ForwardTarget:
        return super().train(False)

    @torch.no_grad()
    def forward(self, inputs: ModalityInputs) -> Tensor:
        return self.encoders(inputs)


def load_pretrained_encoders(model: MMIN, init_state: Mapping[str, Tensor] | None) -> ForwardTarget:
    """Start MMIN's encoders from the fold's utt_fusion weights and build the frozen forward-target copy."""
    if init_state is None:
        raise ValueError(NEEDS_INIT_STATE)
    encoder_state = {k[len(ENCODER_PREFIX):]: v for k, v in init_state.items() if k.startswith(ENCODER_PREFIX)}
    if not encoder_state:
        raise ValueError(f"mmin: init_state has no '{ENCODER_PREFIX}*' weights; it must be a utt_fusion state, "
                         f"got keys like {sorted(init_state)[:3]}")
    try:
        model.encoders.load_state_dict(encoder_state)
    except RuntimeError as err:
        raise ValueError(f"mmin: the utt_fusion encoder weights do not fit this model's encoders (same feature "
                         f"widths and encoder config needed): {err}") from None
    return ForwardTarget(model.encoders)


def mmin_losses(model: MMIN, target: ForwardTarget, data: FoldTensors, batch: ItemBatch,
                weights: Mapping[str, float], trim: bool) -> dict[str, Tensor]:
    """The weighted loss ("loss") and its unweighted parts on one batch."""
    inputs = data.inputs(batch.utterances, trim=trim)  # gathered once, masked both ways
    out = model(mask_inputs(inputs, batch.presence))
    forward_target = target(mask_inputs(inputs, complement(batch.presence)))
    ce = F.cross_entropy(out.logits, data.labels[batch.utterances])
    forward_mse = F.mse_loss(out.imagined, forward_target)
    losses = {"ce": ce, "forward_mse": forward_mse}
    total = float(weights["ce"]) * ce + float(weights["forward"]) * forward_mse
    if model.backward_imagination is not None:
        reconstructed, _ = model.backward_imagination(out.imagined)
        losses["backward_mse"] = F.mse_loss(reconstructed, out.fused.detach())
        total = total + float(weights["backward"]) * losses["backward_mse"]
    return {"loss": total, **losses}


@torch.no_grad()
def imagined_embeddings(model: MMIN, target: ForwardTarget, data: FoldTensors, max_items: int,
                        generator: torch.Generator, trim: bool, batch_size: int | None = None) -> dict[str, Any]:
    """Imagined h' next to its forward target for up to `max_items` test items of the expanded set (x6 over three
    modalities, x2 over two), for a t-SNE plot; encoded `batch_size` items at a time (all at once by default: on
    IEMOCAP's shape 1,000 items at once were the training process's peak memory, 400 MB of inputs alone). Batches
    may round differently from one pass in the last float bits (plot inputs only; no metric reads them)."""
    missing = missing_conditions(data.modalities)
    utterances, conditions = expand_items(len(data), len(missing))
    chosen = torch.randperm(len(utterances), generator=generator)[:max_items].sort().values
    utterances, conditions = utterances[chosen], conditions[chosen]
    presence = condition_mask(missing)[conditions].to(data.labels.device)
    idx = utterances.to(data.labels.device)
    model.eval()
    step = batch_size or max(len(idx), 1)
    imagined = torch.cat([model(data.inputs(idx[s:s + step], presence[s:s + step], trim=trim)).imagined
                          for s in range(0, len(idx), step)])
    forward_target = torch.cat([target(data.inputs(idx[s:s + step], complement(presence[s:s + step]), trim=trim))
                                for s in range(0, len(idx), step)])
    return {"imagined": imagined.cpu().numpy(), "target": forward_target.cpu().numpy(),
            "labels": data.labels[idx].cpu().numpy(),
            "conditions": [missing[int(c)] for c in conditions],
            "utt_ids": [data.utt_ids[int(u)] for u in utterances]}


def check_mmin_cfg(config: Mapping[str, Any]) -> None:
    """MMIN's own keys and choices (the shared ones are checked by the recipe)."""
    require(config, MMIN_KEYS, "mmin")
    require(config["loss_weights"], ("ce", "forward", "backward"), "mmin.loss_weights")
    for key, choices in (("imagination", IMAGINATIONS), ("init", INITS)):
        if config[key] not in choices:
            raise ValueError(f"mmin: {key} must be one of {list(choices)}, got {config[key]!r}")


def train_and_evaluate(train: Parts, val: Parts, test: Parts, config: dict, *, seed: int,
                       device: torch.device, init_state: dict | None = None) -> FoldOutcome:
    """Train one fold of MMIN (or an ablation, per `config`) from the fold's utt_fusion state `init_state`, on the
    modalities the sets hold (two or three: the missing conditions over them)."""
    check_mmin_cfg(config)
    if init_state is None:
        raise ValueError(NEEDS_INIT_STATE)
    generator = start(config, seed, "mmin")
    if len(train.modalities) < MIN_MODALITIES:
        raise ValueError(NEEDS_TWO_MODALITIES.format(modalities=", ".join(train.modalities)))
    folds = fold_tensors(train, val, test, config, device)
    plan = condition_plan(config, folds["train"].modalities, "mmin")
    model = MMIN(folds["train"].dims, int(config["n_classes"]), config)
    target = load_pretrained_encoders(model, init_state)
    model.to(device)
    target.to(device)
    trim = not config["encoder"]["pool_over_padding"]
    weights = config["loss_weights"]

    def step(batch: ItemBatch, epoch: int) -> dict[str, Tensor]:
        return mmin_losses(model, target, folds["train"], batch, weights, trim)

    outcome = train_and_test(model, model.encoders, model.head, folds, config, step=step, networks=model.networks(),
                             generator=generator, device=device, describe="mmin", plan=plan)
    outcome.extras["embeddings"] = imagined_embeddings(model, target, folds["test"], int(config["tsne_max_items"]),
                                                       generator, trim, int(config["eval_batch_size"]))
    return outcome

