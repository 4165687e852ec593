"""Hide a fraction of a set's labels the way the split stage does (`pipeline.splits.hide_labels`: per class,
round(fraction x n) labels stay, at least one; nested across fractions for one seed and key)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.data import UNLABELLED
from pipeline.manifest import Utterance
from pipeline.splits import hide_labels


def with_hidden_labels(utt_ids: Sequence[str], labels: torch.Tensor, fraction: float, seed: int,
                       key: str = "fold") -> torch.Tensor:
    """`labels` with the hidden ones set to -1 (labels already -1 stay -1)."""
    values = [int(v) for v in labels.tolist()]
    utts = [Utterance(utt_id=u, corpus="fixture", speaker="s", session="s", label=str(v))
            for u, v in zip(utt_ids, values, strict=True) if v != UNLABELLED]
    hidden = set(hide_labels(utts, fraction, seed, key))
    return torch.tensor([UNLABELLED if u in hidden else v for u, v in zip(utt_ids, values, strict=True)],
                        dtype=torch.int64)
