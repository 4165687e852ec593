"""Utterance-level encoders of MMIN and its baselines: one vector per utterance and modality.

Audio and visual sequences go through a 1-layer unidirectional LSTM whose hidden states are max-pooled over time;
text goes through a TextCNN. MMIN pools over the zero padding too (its published numbers were produced that way);
`pool_over_padding: false` pools over the real frames only, which for a unidirectional LSTM is exactly what packing
the sequences would give, without the packing cost. Input widths always come from the data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# modality -> (values [B, T, D], lengths [B])
ModalityInputs = Mapping[str, tuple[Tensor, Tensor]]
# MMIN concatenates the utterance embeddings in this order everywhere
FUSION_ORDER = ("audio", "text", "visual")


def _frame_mask(lengths: Tensor, steps: int) -> Tensor:
    """[B, steps] bool, true on the first max(length, 1) steps: an absent modality keeps one zero frame, as
    MMIN stored a single zero row for an utterance without a face."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths.clamp(min=1)[:, None]


class LSTMEncoder(nn.Module):
    """LSTM over frames, utterance embedding = max over time of all hidden states."""

    def __init__(self, input_dim: int, hidden_size: int, pool_over_padding: bool) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_dim, hidden_size, num_layers=1, batch_first=True)
        self.pool_over_padding = pool_over_padding
        self.output_dim = hidden_size

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        if values.shape[1] == 0:
            values = values.new_zeros(values.shape[0], 1, values.shape[2])
        states, _ = self.rnn(values)
        if not self.pool_over_padding:
            valid = _frame_mask(lengths, states.shape[1])
            states = states.masked_fill(~valid.unsqueeze(-1), float("-inf"))
        return states.amax(dim=1)


class TextCNN(nn.Module):
    """Convolutions spanning the full feature width (kernel heights e.g. 3, 4, 5), ReLU, max over time, concat,
    dropout, Linear -> ReLU. Sequences shorter than the tallest kernel are zero-padded up to it."""

    def __init__(self, input_dim: int, filters: int, kernel_heights: Sequence[int], dropout: float,
                 embedding_size: int, pool_over_padding: bool) -> None:
        super().__init__()
        if not kernel_heights or min(kernel_heights) < 1:
            raise ValueError(f"kernel heights must be positive integers, got {list(kernel_heights)}")
        self.kernel_heights = [int(k) for k in kernel_heights]
        # a Conv1d over [B, D, T] with D input channels is the authors' Conv2d with a (k, D) kernel
        self.convs = nn.ModuleList(nn.Conv1d(input_dim, filters, k) for k in self.kernel_heights)
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Sequential(nn.Linear(filters * len(self.kernel_heights), embedding_size), nn.ReLU())
        self.pool_over_padding = pool_over_padding
        self.output_dim = embedding_size

    def forward(self, values: Tensor, lengths: Tensor) -> Tensor:
        x = values.transpose(1, 2).contiguous()  # once, not once per kernel height inside each convolution
        shortfall = max(self.kernel_heights) - x.shape[2]
        if shortfall > 0:
            x = F.pad(x, (0, shortfall))
        pooled = []
        for height, conv in zip(self.kernel_heights, self.convs, strict=True):
            activation = F.relu(conv(x))
            if not self.pool_over_padding:
                # windows lying wholly inside the real tokens; at least the first one
                valid = _frame_mask(lengths - height + 1, activation.shape[2])
                # ReLU outputs are >= 0, so zeroing the invalid windows leaves the max over the valid ones
                activation = activation.masked_fill(~valid.unsqueeze(1), 0.0)
            pooled.append(activation.amax(dim=2))
        return self.project(self.dropout(torch.cat(pooled, dim=1)))


class UtteranceEncoders(nn.Module):
    """One encoder per modality of `dims` (any non-empty subset of audio, visual, text: the modalities the corpus
    has); `forward` gives the fused vector in MMIN's A, L, V order over those modalities."""

    def __init__(self, dims: Mapping[str, int], config: Mapping) -> None:
        super().__init__()
        unknown = sorted(set(dims) - set(FUSION_ORDER))
        if unknown or not dims:
            raise ValueError(f"encoders need feature widths for a non-empty subset of {list(FUSION_ORDER)}, "
                             f"got {dict(dims)}")
        pool = bool(config["pool_over_padding"])
        self.modalities = tuple(m for m in FUSION_ORDER if m in dims)  # fusion order
        self.audio = LSTMEncoder(dims["audio"], int(config["audio_hidden"]), pool) if "audio" in dims else None
        self.visual = LSTMEncoder(dims["visual"], int(config["visual_hidden"]), pool) if "visual" in dims else None
        self.text = (TextCNN(dims["text"], int(config["text_filters"]), config["text_kernel_heights"],
                             float(config["text_dropout"]), int(config["text_embedding"]), pool)
                     if "text" in dims else None)
        self.output_dim = sum(encoder.output_dim for encoder in self.parts())

    def parts(self) -> list[nn.Module]:
        """The encoders, in fusion order (the separately clipped networks)."""
        return [getattr(self, name) for name in self.modalities]

    def embed(self, inputs: ModalityInputs) -> dict[str, Tensor]:
        """modality -> [B, embedding] for each modality of the encoders."""
        return {name: getattr(self, name)(*inputs[name]) for name in self.modalities}

    def forward(self, inputs: ModalityInputs) -> Tensor:
        embedded = self.embed(inputs)
        return torch.cat([embedded[name] for name in self.modalities], dim=-1)
