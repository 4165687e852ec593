"""The tensors every model takes: padded per-modality sequences plus labels and dialogue structure.

`pipeline/` builds an `UtteranceSet` from the feature stores and the split; the models never see a file.
Modality order in condition names is MMIN's a, v, l (audio, visual, lexical); fusion order is A, L, V.
A set holds the modalities its corpus has: a modality the corpus lacks is None (`modalities` lists the others),
while a modality missing for one utterance of a modality the corpus has is a sequence of length 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from models.condition_names import CONDITIONS, MISSING_CONDITIONS, MODALITIES

__all__ = ["CONDITIONS", "MISSING_CONDITIONS", "MODALITIES", "UNLABELLED", "Sequences", "UtteranceSet",
           "UtteranceView", "condition_mask"]

UNLABELLED = -1


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
    """A set of utterances with their corpus's modalities (None: the corpus has no such modality; at least one is
    given), labels (-1 = none) and dialogue structure."""

    utt_ids: list[str]
    audio: Sequences | None
    visual: Sequences | None
    text: Sequences | None
    labels: Tensor
    speakers: list[str] = field(default_factory=list)
    dialogue_ids: list[str | None] = field(default_factory=list)
    turns: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.utt_ids)
        if not self.modalities:
            raise ValueError("an UtteranceSet needs at least one modality (audio, visual or text)")
        for name in self.modalities:
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

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this set holds, in the order audio, visual, text."""
        return tuple(m for m in MODALITIES if getattr(self, m) is not None)

    def modality(self, name: str) -> Sequences:
        if name not in MODALITIES:
            raise ValueError(f"unknown modality {name!r}; known: {list(MODALITIES)}")
        seqs = getattr(self, name)
        if seqs is None:
            raise ValueError(f"these utterances have no {name} modality (they have {', '.join(self.modalities)})")
        return seqs

    @property
    def dims(self) -> dict[str, int]:
        """Feature width per modality this set holds."""
        return {m: self.modality(m).dim for m in self.modalities}

    def subset(self, idx: Tensor | Sequence[int]) -> UtteranceSet:
        idx_list = [int(i) for i in torch.as_tensor(idx, dtype=torch.long).tolist()]
        parts = {m: (getattr(self, m).index(idx_list) if getattr(self, m) is not None else None) for m in MODALITIES}
        return UtteranceSet(
            [self.utt_ids[i] for i in idx_list], parts["audio"], parts["visual"], parts["text"],
            self.labels[idx_list], [self.speakers[i] for i in idx_list],
            [self.dialogue_ids[i] for i in idx_list], [self.turns[i] for i in idx_list])

    def view(self, idx: Tensor | Sequence[int]) -> UtteranceView:
        """The utterances `idx` without copying their sequences (see `UtteranceView`)."""
        rows = torch.as_tensor(idx, dtype=torch.long)
        return UtteranceView(self, rows, self.labels[rows])

    def labelled(self) -> Tensor:
        return (self.labels != UNLABELLED).nonzero().flatten()

    def dialogues(self) -> list[list[int]]:
        """Utterance indices per dialogue, in turn order; dialogues in order of first appearance."""
        groups: dict[str, list[int]] = {}
        for i, dia in enumerate(self.dialogue_ids):
            groups.setdefault(dia if dia is not None else f"<utt>{self.utt_ids[i]}", []).append(i)
        return [sorted(g, key=lambda i: (self.turns[i] if self.turns[i] is not None else 0, self.utt_ids[i]))
                for g in groups.values()]


@dataclass
class UtteranceView:
    """Rows `rows` of an UtteranceSet, read through the index instead of copied: a fold's train/val/test parts
    share the loaded set's padded arrays. `labels` are the view's own (a run may hide some)."""

    source: UtteranceSet
    rows: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.rows.ndim != 1 or self.labels.shape != self.rows.shape:
            raise ValueError(f"rows {tuple(self.rows.shape)} / labels {tuple(self.labels.shape)} mismatch")

    @classmethod
    def of(cls, data: UtteranceSet | UtteranceView) -> UtteranceView:
        """A view of every utterance of `data` (a view is returned as it is)."""
        if isinstance(data, UtteranceView):
            return data
        return cls(data, torch.arange(len(data)), data.labels)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def utt_ids(self) -> list[str]:
        return [self.source.utt_ids[i] for i in self.rows.tolist()]

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.source.modalities

    @property
    def dims(self) -> dict[str, int]:
        return self.source.dims

    def labelled(self) -> Tensor:
        return (self.labels != UNLABELLED).nonzero().flatten()

    def select(self, idx: Tensor) -> UtteranceView:
        """The view's utterances `idx` (positions within the view), still without a copy."""
        return UtteranceView(self.source, self.rows[idx], self.labels[idx])

    def materialise(self) -> UtteranceSet:
        """An UtteranceSet holding copies of the rows (with the view's labels)."""
        data = self.source.subset(self.rows)
        data.labels = self.labels.clone()
        return data


def condition_mask(names: Sequence[str], device: torch.device | None = None) -> Tensor:
    """[len(names), 3] float presence mask (audio, visual, text) for condition names."""
    try:
        rows = [CONDITIONS[n] for n in names]
    except KeyError as err:
        raise ValueError(f"unknown condition {err.args[0]!r}; known: {list(CONDITIONS)}") from None
    return torch.tensor(rows, dtype=torch.float32, device=device)
