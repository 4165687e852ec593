"""The utterance-level fusion baseline of MMIN ("utt_fusion"), also MMIN's pretraining.

Three encoders (LSTM audio, TextCNN text, LSTM visual; those of the modalities the corpus has), their embeddings
concatenated A, L, V, then a classifier
(Linear -> ReLU -> Dropout per hidden size, then Linear -> n_classes); Kaiming init. Trained with cross-entropy.
`train_conditions: [avl]` gives the full-modality baseline; the six missing conditions with
`train_sampling: expand` give the augmented baseline ("utt_fusion_aug", the training set x6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.encoders import ModalityInputs, UtteranceEncoders
from models.recipe import ItemBatch, Parts, condition_plan, fold_tensors, start, train_and_test
from models.trainer import FoldOutcome, kaiming_init

TAKES_VIEWS = True  # train_and_evaluate reads views (UtteranceSet.view) through models.batches, never copies


class Classifier(nn.Module):
    """Linear -> ReLU -> Dropout for each hidden size, then Linear -> n_classes."""

    def __init__(self, input_dim: int, hidden: Sequence[int], n_classes: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden:
            layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(dropout)]
            width = int(size)
        layers.append(nn.Linear(width, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class UttFusion(nn.Module):
    """Encoders + classifier on the fused A, L, V vector."""

    def __init__(self, dims: Mapping[str, int], n_classes: int, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.encoders = UtteranceEncoders(dims, config["encoder"])
        self.classifier = Classifier(self.encoders.output_dim, config["classifier_hidden"], n_classes,
                                     float(config["dropout"]))
        kaiming_init(self)

    def forward(self, inputs: ModalityInputs) -> Tensor:
        return self.classifier(self.encoders(inputs))


def train_and_evaluate(train: Parts, val: Parts, test: Parts, config: dict, *, seed: int,
                       device: torch.device, init_state: dict | None = None) -> FoldOutcome:
    """Train one fold of utt_fusion / utt_fusion_aug (per `config`) and evaluate it on every test condition over the
    modalities the sets hold (any non-empty subset of audio, visual, text).

    `init_state`, when given, is a UttFusion state to start from (e.g. to fine-tune); normally None."""
    generator = start(config, seed, "utt_fusion")
    folds = fold_tensors(train, val, test, config, device)
    plan = condition_plan(config, folds["train"].modalities, "utt_fusion")
    model = UttFusion(folds["train"].dims, int(config["n_classes"]), config)
    if init_state is not None:
        model.load_state_dict(init_state)
    model.to(device)
    trim = not config["encoder"]["pool_over_padding"]
    train_data = folds["train"]

    def step(batch: ItemBatch, epoch: int) -> dict[str, Tensor]:
        logits = model(train_data.inputs(batch.utterances, batch.presence, trim=trim))
        ce = F.cross_entropy(logits, train_data.labels[batch.utterances])
        return {"loss": ce}

    enc = model.encoders
    return train_and_test(model, enc, model.classifier, folds, config, step=step,
                          networks=[*enc.parts(), model.classifier], generator=generator,
                          device=device, describe="utt_fusion", plan=plan)
