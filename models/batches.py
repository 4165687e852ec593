"""A fold's train/val/test utterances as device-resident tensors, and the batches the MMIN family reads.

Everything an epoch needs is on the training device once; a batch is an index gather plus a presence mask, with
no Python loop over utterances. Preparation does what the MMIN recipe does to its inputs: keep the labelled
utterances, give every split the same number of frames per modality (pooling over padding makes the embedding
depend on it), and z-normalise chosen modalities with the training split's mean/std over real frames.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from models.conditions import mask_inputs
from models.data import MODALITIES, Sequences, UtteranceSet

log = logging.getLogger(__name__)


@dataclass
class FoldTensors:
    """One split on the device: modality -> values [N, T, D] and lengths [N] for the modalities the corpus has
    (in the order audio, visual, text); labels [N] in [0, n_classes)."""

    values: dict[str, Tensor]
    lengths: dict[str, Tensor]
    labels: Tensor
    utt_ids: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dims(self) -> dict[str, int]:
        return {name: int(v.shape[2]) for name, v in self.values.items()}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.values)

    def inputs(self, idx: Tensor, presence: Tensor | None = None,
               trim: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
        """The utterances `idx`, masked by `presence` [B, 3] when given. `trim` cuts the time axis to the batch's
        longest sequence: exact when the encoders ignore padding, and faster."""
        batch = {}
        for name in self.values:
            values, lengths = self.values[name][idx], self.lengths[name][idx]
            if trim:
                values = values[:, : max(int(lengths.max()), 1)] if len(lengths) else values
            batch[name] = (values, lengths)
        return mask_inputs(batch, presence) if presence is not None else batch


def _fit_frames(seqs: Sequences, frames: int) -> Sequences:
    """Zero-pad or truncate the time axis to `frames`."""
    values, lengths = seqs.values, seqs.lengths
    if values.shape[1] >= frames:
        return Sequences(values[:, :frames].contiguous(), lengths.clamp(max=frames))
    pad = values.new_zeros(values.shape[0], frames - values.shape[1], values.shape[2])
    return Sequences(torch.cat([values, pad], dim=1), lengths)


def _normalise(seqs: Sequences, mean: Tensor, std: Tensor) -> Sequences:
    """(x - mean) / std on real frames; padding stays zero."""
    mask = seqs.mask().unsqueeze(-1)
    return Sequences(torch.where(mask, (seqs.values - mean) / std, torch.zeros_like(seqs.values)), seqs.lengths)


def real_frame_stats(seqs: Sequences) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and population std over all real frames; std 0 -> 1."""
    frames = seqs.values[seqs.mask()].double()
    if frames.shape[0] == 0:
        raise ValueError("cannot normalise: the training split has no real frames for this modality")
    mean, std = frames.mean(0), frames.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


def prepare_fold(splits: Mapping[str, UtteranceSet], n_classes: int, frames: Mapping[str, int | None],
                 normalise: Sequence[str], device: torch.device) -> dict[str, FoldTensors]:
    """FoldTensors for each split (`train` must be among them, its statistics normalise all of them).

    frames: modality -> fixed frame count, or None for the longest sequence over the given splits.
    normalise: modalities to z-normalise with the training split's statistics (MMIN: audio).
    Only the modalities the sets hold are prepared; `frames` and `normalise` may name others (ignored)."""
    if "train" not in splits:
        raise ValueError(f"prepare_fold needs a 'train' split, got {sorted(splits)}")
    unknown = sorted(set(normalise) - set(MODALITIES)) + sorted(set(frames) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; known: {list(MODALITIES)}")
    labelled: dict[str, UtteranceSet] = {}
    for split, data in splits.items():
        keep = data.labelled()
        if len(keep) == 0:
            raise ValueError(f"the {split} split has no labelled utterance")
        subset = data.subset(keep) if len(keep) < len(data) else data
        bad = (subset.labels < 0) | (subset.labels >= n_classes)
        if bool(bad.any()):
            first = int(bad.nonzero()[0])
            raise ValueError(f"{split} utterance {subset.utt_ids[first]!r} has label {int(subset.labels[first])} "
                             f"outside [0, {n_classes})")
        if len(keep) < len(data):
            log.info("%s: %d of %d utterances are labelled and used", split, len(keep), len(data))
        labelled[split] = subset
    dims = labelled["train"].dims
    for split, data in labelled.items():
        if data.dims != dims:
            raise ValueError(f"{split} feature widths {data.dims} differ from train's {dims}")

    prepared: dict[str, dict[str, Sequences]] = {split: {} for split in labelled}
    for name in labelled["train"].modalities:
        wanted = frames.get(name)
        count = int(wanted) if wanted is not None else max(d.modality(name).values.shape[1] for d in labelled.values())
        count = max(count, 1)
        for split, data in labelled.items():
            prepared[split][name] = _fit_frames(data.modality(name), count)
        if name in normalise:
            mean, std = real_frame_stats(prepared["train"][name])
            for split in labelled:
                prepared[split][name] = _normalise(prepared[split][name], mean, std)
    return {split: FoldTensors({n: s.values.to(device) for n, s in prepared[split].items()},
                               {n: s.lengths.to(device) for n, s in prepared[split].items()},
                               labelled[split].labels.to(device), labelled[split].utt_ids)
            for split in labelled}
