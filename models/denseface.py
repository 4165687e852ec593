"""Denseface: the DenseNet-BC face-expression network whose pooled last block is MMIN's 342-d visual feature.

DenseNet-BC (Huang et al. 2017) as the MMIN authors trained it on FER+ (docs/models.md): a 3x3 stem convolution
with 2 x growth channels, `n_blocks` dense blocks of bottleneck layers (BN-ReLU-Conv1x1 to 4 x growth, BN-ReLU-
Conv3x3 to growth, concatenated onto the input), transitions that compress the channels by `compression` and
halve the resolution, then BN-ReLU and a global average pool. That pooled vector is the feature; a linear head
maps it to the expression classes (FER+: 8).

Channel arithmetic at depth 100, growth 12, 3 blocks, compression 0.5: (100 - 4) / 6 = 16 layers per block;
24 -> 24 + 16*12 = 216 -> 108 -> 300 -> 150 -> 342. `denseface_feature_dim` computes it for any setting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class DensefaceConfig:
    """The shape of the network; the feature dimension follows from it."""

    depth: int = 100
    growth_rate: int = 12
    n_blocks: int = 3
    compression: float = 0.5
    bottleneck: bool = True
    dropout: float = 0.0
    n_classes: int = 8
    in_channels: int = 1

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> DensefaceConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown Denseface network settings {sorted(unknown)}; known: {sorted(known)}")
        out = cls(**config)
        out.layers_per_block()  # validates depth against the block layout
        if not 0 < out.compression <= 1:
            raise ValueError(f"compression must lie in (0, 1], got {out.compression}")
        if out.growth_rate < 1 or out.n_blocks < 1 or out.n_classes < 1 or out.in_channels < 1:
            raise ValueError(f"growth_rate, n_blocks, n_classes and in_channels must be >= 1: {out}")
        if not 0 <= out.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {out.dropout}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def layers_per_block(self) -> int:
        """Dense layers in each block: depth = stem + blocks x layers x convs-per-layer + transitions + head."""
        convs_per_layer = 2 if self.bottleneck else 1
        body = self.depth - 1 - (self.n_blocks - 1) - 1
        if body <= 0 or body % (self.n_blocks * convs_per_layer):
            raise ValueError(
                f"depth {self.depth} does not fit {self.n_blocks} blocks of "
                f"{'bottleneck' if self.bottleneck else 'plain'} layers: depth - {self.n_blocks + 1} must be a "
                f"positive multiple of {self.n_blocks * convs_per_layer} (e.g. 40, 100, 250 for 3 blocks)")
        return body // (self.n_blocks * convs_per_layer)

    def block_channels(self) -> list[tuple[int, int]]:
        """(channels in, channels out) of each dense block."""
        per_block = self.layers_per_block()
        channels = 2 * self.growth_rate if self.bottleneck else 16
        out = []
        for block in range(self.n_blocks):
            end = channels + per_block * self.growth_rate
            out.append((channels, end))
            channels = int(math.floor(end * self.compression)) if block < self.n_blocks - 1 else end
        return out

    @property
    def feature_dim(self) -> int:
        return self.block_channels()[-1][1]


def denseface_feature_dim(depth: int = 100, growth_rate: int = 12, n_blocks: int = 3,
                          compression: float = 0.5, bottleneck: bool = True) -> int:
    return DensefaceConfig(depth=depth, growth_rate=growth_rate, n_blocks=n_blocks, compression=compression,
                           bottleneck=bottleneck).feature_dim


class DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k) (or the plain 3x3 half only); output concatenated to input."""

    def __init__(self, channels: int, growth_rate: int, bottleneck: bool, dropout: float) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        inner = channels
        if bottleneck:
            inner = 4 * growth_rate
            self.norm1 = nn.BatchNorm2d(channels)
            self.conv1 = nn.Conv2d(channels, inner, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, growth_rate, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        h = x
        if self.bottleneck:
            h = self.conv1(F.relu(self.norm1(h)))
            h = F.dropout(h, self.dropout, self.training)
        h = self.conv2(F.relu(self.norm2(h)))
        h = F.dropout(h, self.dropout, self.training)
        return torch.cat([x, h], dim=1)


class Transition(nn.Module):
    """BN-ReLU-Conv1x1 (compressing the channels) then 2x2 average pooling."""

    def __init__(self, channels_in: int, channels_out: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels_in)
        self.conv = nn.Conv2d(channels_in, channels_out, kernel_size=1, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        h = F.dropout(self.conv(F.relu(self.norm(x))), self.dropout, self.training)
        return F.avg_pool2d(h, 2)


class Denseface(nn.Module):
    """DenseNet-BC on normalised grayscale face crops [N, 1, H, W] (64 x 64 in MMIN's setting)."""

    def __init__(self, config: DensefaceConfig | None = None, initialise: bool = True) -> None:
        super().__init__()
        self.config = config or DensefaceConfig()
        cfg = self.config
        blocks = cfg.block_channels()
        self.stem = nn.Conv2d(cfg.in_channels, blocks[0][0], kernel_size=3, padding=1, bias=False)
        stages: list[nn.Module] = []
        for index, (channels_in, channels_out) in enumerate(blocks):
            layers = [DenseLayer(channels_in + i * cfg.growth_rate, cfg.growth_rate, cfg.bottleneck, cfg.dropout)
                      for i in range(cfg.layers_per_block())]
            stages.append(nn.Sequential(*layers))
            if index < len(blocks) - 1:
                stages.append(Transition(channels_out, blocks[index + 1][0], cfg.dropout))
        self.body = nn.Sequential(*stages)
        self.final_norm = nn.BatchNorm2d(blocks[-1][1])
        self.classifier = nn.Linear(blocks[-1][1], cfg.n_classes)
        if initialise:  # False when weights are loaded next anyway
            self.reset_parameters()

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def reset_parameters(self) -> None:
        """He-normal convolutions (fan-out, as DenseNet), unit BN, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """[N, feature_dim]: the global average pool of the last block after BN-ReLU."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected [N, {self.config.in_channels}, H, W], got {tuple(x.shape)}")
        h = self.body(self.stem(x))
        h = F.relu(self.final_norm(h))
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        """[N, n_classes] expression logits."""
        return self.classifier(self.features(x))
