"""A fold's train/val/test utterances as device-resident tensors, and the batches the MMIN family reads.

Everything an epoch needs is on the training device once; a batch is an index gather plus a presence mask, with
no Python loop over utterances. Preparation does what the MMIN recipe does to its inputs: keep the labelled
utterances, give every split the same number of frames per modality (pooling over padding makes the embedding
depend on it), and z-normalise chosen modalities with the training split's mean/std over real frames.

The splits are not copied: each holds row indices into the loaded set's padded arrays (shared by train, val and
test, and by every run of a process), and a batch is fitted to the frame count and normalised as it is gathered.
Both are elementwise, so the numbers are those of fitting and normalising the whole split first, without the
split-sized copies and temporaries (on IEMOCAP's shape, about 1 GB per copy).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from models.conditions import mask_inputs
from models.data import MODALITIES, Sequences, UtteranceSet, UtteranceView

log = logging.getLogger(__name__)


@dataclass
class ModalityRows:
    """One modality of a fold, read through row indices of a padded `source` [N, T, D] (shared, never written):
    a gather fitted to `frames` (zero-padded or truncated, lengths clamped) and, with `mean`/`std`, z-normalised
    on the real frames (padding stays zero)."""

    source: Tensor
    source_lengths: Tensor
    frames: int
    mean: Tensor | None = None
    std: Tensor | None = None

    @property
    def dim(self) -> int:
        return int(self.source.shape[2])

    def gather(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """values [B, frames, D] and lengths [B] of the source rows `rows`."""
        steps = self.source.shape[1]
        lengths = self.source_lengths[rows]
        if steps >= self.frames:
            values = (self.source if steps == self.frames else self.source[:, : self.frames])[rows]
            lengths = lengths.clamp(max=self.frames)
        else:
            values = self.source[rows]
            values = torch.cat([values, values.new_zeros(values.shape[0], self.frames - steps, values.shape[2])], 1)
        if self.mean is not None and self.std is not None:
            # in place on the gathered copy (never on `source`): the values of where(real, (v - mean) / std, 0)
            padding = (torch.arange(self.frames, device=lengths.device)[None, :] >= lengths[:, None]).unsqueeze(-1)
            values.sub_(self.mean).div_(self.std).masked_fill_(padding, 0.0)
        return values, lengths


@dataclass
class FoldTensors:
    """One split on the device: per modality the corpus has (in the order audio, visual, text) its `ModalityRows`,
    the split's `rows` into their sources, labels [N] in [0, n_classes) and utterance ids."""

    modality_rows: dict[str, ModalityRows]
    rows: Tensor
    labels: Tensor
    utt_ids: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dims(self) -> dict[str, int]:
        return {name: rows.dim for name, rows in self.modality_rows.items()}

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.modality_rows)

    @property
    def values(self) -> dict[str, Tensor]:
        """modality -> the whole split's values [N, T, D] (a copy: for inspection, not for batches)."""
        return {name: rows.gather(self.rows)[0] for name, rows in self.modality_rows.items()}

    @property
    def lengths(self) -> dict[str, Tensor]:
        return {name: rows.gather(self.rows)[1] for name, rows in self.modality_rows.items()}

    def inputs(self, idx: Tensor, presence: Tensor | None = None,
               trim: bool = False) -> dict[str, tuple[Tensor, Tensor]]:
        """The utterances `idx`, masked by `presence` [B, 3] when given. `trim` cuts the time axis to the batch's
        longest sequence: exact when the encoders ignore padding, and faster."""
        rows = self.rows[idx]
        batch = {}
        for name, modality in self.modality_rows.items():
            values, lengths = modality.gather(rows)
            if trim:
                values = values[:, : max(int(lengths.max()), 1)] if len(lengths) else values
            batch[name] = (values, lengths)
        return mask_inputs(batch, presence) if presence is not None else batch


def _frame_stats(frames: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and population std of real frames [n, D] (float64); std 0 -> 1."""
    if frames.shape[0] == 0:
        raise ValueError("cannot normalise: the training split has no real frames for this modality")
    mean, std = frames.mean(0), frames.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


def real_frame_stats(seqs: Sequences) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and population std over all real frames; std 0 -> 1."""
    return _frame_stats(seqs.values[seqs.mask()].double())


def _rows_frame_stats(seqs: Sequences, rows: Tensor, frames: int, chunk: int = 256) -> tuple[Tensor, Tensor]:
    """`real_frame_stats` of the rows `rows` fitted to `frames`, gathered a chunk of rows at a time: the same real
    frames in the same order (so the same statistics), without a split-sized copy."""
    kept = min(frames, seqs.values.shape[1])
    lengths = seqs.lengths[rows].clamp(max=kept)
    real = torch.empty(int(lengths.sum()), seqs.values.shape[2], dtype=torch.float64)
    filled = 0
    steps = torch.arange(kept)
    for start in range(0, len(rows), chunk):
        part = seqs.values[:, :kept][rows[start:start + chunk]]
        frames_part = part[steps[None, :] < lengths[start:start + chunk, None]]
        real[filled:filled + frames_part.shape[0]] = frames_part
        filled += frames_part.shape[0]
    return _frame_stats(real)


def _labelled_views(splits: Mapping[str, UtteranceSet | UtteranceView], n_classes: int) -> dict[str, UtteranceView]:
    """Each split's labelled utterances as a view, labels checked against [0, n_classes)."""
    labelled: dict[str, UtteranceView] = {}
    for split, data in splits.items():
        view = UtteranceView.of(data)
        keep = view.labelled()
        if len(keep) == 0:
            raise ValueError(f"the {split} split has no labelled utterance")
        subset = view.select(keep) if len(keep) < len(view) else view
        bad = (subset.labels < 0) | (subset.labels >= n_classes)
        if bool(bad.any()):
            first = int(bad.nonzero()[0])
            raise ValueError(f"{split} utterance {subset.source.utt_ids[int(subset.rows[first])]!r} has label "
                             f"{int(subset.labels[first])} outside [0, {n_classes})")
        if len(keep) < len(view):
            log.info("%s: %d of %d utterances are labelled and used", split, len(keep), len(view))
        labelled[split] = subset
    return labelled


def prepare_fold(splits: Mapping[str, UtteranceSet | UtteranceView], n_classes: int,
                 frames: Mapping[str, int | None], normalise: Sequence[str],
                 device: torch.device) -> dict[str, FoldTensors]:
    """FoldTensors for each split (`train` must be among them, its statistics normalise all of them).

    frames: modality -> fixed frame count, or None for the longest sequence over the given splits.
    normalise: modalities to z-normalise with the training split's statistics (MMIN: audio).
    Only the modalities the sets hold are prepared; `frames` and `normalise` may name others (ignored).
    Views (`UtteranceSet.view`) of one set share its arrays; nothing is copied but the labels and row indices."""
    if "train" not in splits:
        raise ValueError(f"prepare_fold needs a 'train' split, got {sorted(splits)}")
    unknown = sorted(set(normalise) - set(MODALITIES)) + sorted(set(frames) - set(MODALITIES))
    if unknown:
        raise ValueError(f"unknown modalities {unknown}; known: {list(MODALITIES)}")
    labelled = _labelled_views(splits, n_classes)
    dims = labelled["train"].dims
    for split, data in labelled.items():
        if data.dims != dims:
            raise ValueError(f"{split} feature widths {data.dims} differ from train's {dims}")

    on_device: dict[int, Tensor] = {}  # one device copy per source array (none on the CPU)

    def moved(tensor: Tensor) -> Tensor:
        return on_device.setdefault(id(tensor), tensor.to(device))

    prepared: dict[str, dict[str, ModalityRows]] = {split: {} for split in labelled}
    for name in labelled["train"].modalities:
        wanted = frames.get(name)
        count = int(wanted) if wanted is not None else max(
            d.source.modality(name).values.shape[1] for d in labelled.values())
        count = max(count, 1)
        mean = std = None
        if name in normalise:
            train = labelled["train"]
            mean, std = (t.to(device) for t in _rows_frame_stats(train.source.modality(name), train.rows, count))
        for split, data in labelled.items():
            seqs = data.source.modality(name)
            prepared[split][name] = ModalityRows(moved(seqs.values), moved(seqs.lengths), count, mean, std)
    return {split: FoldTensors(prepared[split], labelled[split].rows.to(device), labelled[split].labels.to(device),
                               labelled[split].utt_ids)
            for split in labelled}
