"""The tensors every model takes: padded per-modality sequences plus labels and dialogue structure.

`pipeline/` builds an `UtteranceSet` from the feature stores and the split; the models never see a file.
Modality order in condition names is MMIN's a, v, l (audio, visual, lexical); fusion order is A, L, V.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from models.names import CONDITIONS, MISSING_CONDITIONS, MODALITIES, UNLABELLED  # noqa: F401 - re-exported


@dataclass
class Sequences:
    """One modality: values [N, T, D] float32 zero-padded, lengths [N] int64 (0 = modality absent)."""

    values: Tensor
    lengths: Tensor

    def __post_init__(self) -> None:
        if self.values.ndim != 3 or self.lengths.shape != (self.values.shape[0],):
            raise ValueError(f"values {tuple(self.values.shape)} / lengths {tuple(self.lengths.shape)} mismatch")

    @property
    def dim(self) -> int:
        return int(self.values.shape[2])

    def mask(self) -> Tensor:
        """[N, T] bool, true on real frames."""
        steps = torch.arange(self.values.shape[1], device=self.lengths.device)
        return steps[None, :] < self.lengths[:, None]

    def pooled(self, how: str = "mean") -> Tensor:
        """[N, D]: mean or max over the real frames; zeros for an absent modality."""
        mask = self.mask().unsqueeze(-1)
        if how == "mean":
            total = (self.values * mask).sum(1)
            return total / self.lengths.clamp(min=1).unsqueeze(-1).to(total.dtype)
        if how == "max":
            filled = self.values.masked_fill(~mask, float("-inf")).amax(1)
            return torch.where(self.lengths[:, None] > 0, filled, torch.zeros_like(filled))
        raise ValueError(f"pooling must be 'mean' or 'max', got {how!r}")

    def index(self, idx: Tensor | Sequence[int]) -> Sequences:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Sequences(self.values[idx], self.lengths[idx])


@dataclass
class UtteranceSet:
    """A set of utterances with the three modalities, labels (-1 = none) and dialogue structure."""

    utt_ids: list[str]
    audio: Sequences
    visual: Sequences
    text: Sequences
    labels: Tensor
    speakers: list[str] = field(default_factory=list)
    dialogue_ids: list[str | None] = field(default_factory=list)
    turns: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.utt_ids)
        for name in MODALITIES:
            if self.modality(name).values.shape[0] != n:
                raise ValueError(f"{name} has {self.modality(name).values.shape[0]} rows for {n} utterances")
        if self.labels.shape != (n,):
            raise ValueError(f"labels of shape {tuple(self.labels.shape)} for {n} utterances")
        for name in ("speakers", "dialogue_ids", "turns"):
            values = getattr(self, name)
            if not values:
                setattr(self, name, [None] * n if name != "speakers" else [""] * n)
            elif len(values) != n:
                raise ValueError(f"{name} has {len(values)} entries for {n} utterances")

    def __len__(self) -> int:
        return len(self.utt_ids)

    def modality(self, name: str) -> Sequences:
        return {"audio": self.audio, "visual": self.visual, "text": self.text}[name]

    @property
    def dims(self) -> dict[str, int]:
        return {m: self.modality(m).dim for m in MODALITIES}

    def subset(self, idx: Tensor | Sequence[int]) -> UtteranceSet:
        idx_list = [int(i) for i in torch.as_tensor(idx, dtype=torch.long).tolist()]
        return UtteranceSet(
            [self.utt_ids[i] for i in idx_list], self.audio.index(idx_list), self.visual.index(idx_list),
            self.text.index(idx_list), self.labels[idx_list], [self.speakers[i] for i in idx_list],
            [self.dialogue_ids[i] for i in idx_list], [self.turns[i] for i in idx_list])

    def labelled(self) -> Tensor:
        return (self.labels != UNLABELLED).nonzero().flatten()

    def dialogues(self) -> list[list[int]]:
        """Utterance indices per dialogue, in turn order; dialogues in order of first appearance."""
        groups: dict[str, list[int]] = {}
        for i, dia in enumerate(self.dialogue_ids):
            groups.setdefault(dia if dia is not None else f"<utt>{self.utt_ids[i]}", []).append(i)
        return [sorted(g, key=lambda i: (self.turns[i] if self.turns[i] is not None else 0, self.utt_ids[i]))
                for g in groups.values()]


def condition_mask(names: Sequence[str], device: torch.device | None = None) -> Tensor:
    """[len(names), 3] float presence mask (audio, visual, text) for condition names."""
    try:
        rows = [CONDITIONS[n] for n in names]
    except KeyError as err:
        raise ValueError(f"unknown condition {err.args[0]!r}; known: {list(CONDITIONS)}") from None
    return torch.tensor(rows, dtype=torch.float32, device=device)
