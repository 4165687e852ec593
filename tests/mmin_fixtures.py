"""Synthetic utterance sets for the MMIN family's tests and benchmark: every modality carries class signal
(a class-dependent mean under noise), lengths vary, and some utterances have no face (visual length 0)."""

from __future__ import annotations

import torch

from models.data import Sequences, UtteranceSet

# per modality: (frames, width) of the lead's demo corpus (audio after MMIN's 10x downsampling)
DEMO_SHAPES = {"audio": (25, 130), "visual": (20, 342), "text": (12, 384)}


def synthetic_set(n: int, n_classes: int = 4, shapes: dict[str, tuple[int, int]] | None = None, seed: int = 0,
                  signal: float = 1.0, no_face_every: int = 7, prefix: str = "utt") -> UtteranceSet:
    """`n` utterances; class means are fixed by `seed` so sets drawn with different `prefix` share them."""
    shapes = shapes or DEMO_SHAPES
    means = torch.Generator().manual_seed(seed)
    draws = torch.Generator().manual_seed(seed * 7919 + sum(map(ord, prefix)))
    labels = torch.randint(n_classes, (n,), generator=draws)
    seqs = {}
    for name, (frames, width) in shapes.items():
        class_means = torch.randn(n_classes, width, generator=means) * signal
        lengths = torch.randint(max(frames // 3, 1), frames + 1, (n,), generator=draws)
        values = class_means[labels][:, None, :] + torch.randn(n, frames, width, generator=draws)
        if name == "visual" and no_face_every:
            lengths[::no_face_every] = 0
        values *= (torch.arange(frames)[None, :] < lengths[:, None]).unsqueeze(-1)
        seqs[name] = Sequences(values.float(), lengths.long())
    ids = [f"{prefix}_{i:05d}" for i in range(n)]
    return UtteranceSet(ids, seqs["audio"], seqs["visual"], seqs["text"], labels.long())

TINY_SHAPES = {"audio": (6, 10), "visual": (5, 12), "text": (7, 16)}


def tiny_recipe(**overrides: object) -> dict:
    """A utt_fusion configuration with small networks, for fast tests (the paper's sizes live in params.yaml)."""
    cfg = {"n_classes": 4,
           "encoder": {"audio_hidden": 12, "visual_hidden": 12, "text_embedding": 12, "text_filters": 8,
                       "text_kernel_heights": [3, 4, 5], "text_dropout": 0.5, "pool_over_padding": True},
           "frames": {"audio": None, "visual": None, "text": None}, "normalise": ["audio"],
           "classifier_hidden": [16, 16], "dropout": 0.3, "lr": 2e-3, "betas": [0.9, 0.999], "weight_decay": 0.0,
           "batch_size": 16, "eval_batch_size": 64, "epochs_constant": 1, "epochs_decay": 1, "clip_norm": 0.5,
           "clip_scope": "per_network", "train_conditions": ["avl"], "train_sampling": "expand", "select_on": "avl"}
    cfg.update(overrides)
    return cfg


def tiny_mmin(**overrides: object) -> dict:
    """An MMIN configuration matching `tiny_recipe`'s encoders."""
    cfg = tiny_recipe(dropout=0.5, betas=[0.5, 0.999], clip_norm=1.0,
                      train_conditions=["azz", "zvz", "zzl", "avz", "azl", "zvl"], train_sampling="random",
                      select_on="average", imagination="cra", ae_layers=[24, 16, 8], n_blocks=5, transition=True,
                      cycle=True, loss_weights={"ce": 1.0, "forward": 4.0, "backward": 2.0}, init="kaiming",
                      tsne_max_items=20)
    cfg.update(overrides)
    return cfg
