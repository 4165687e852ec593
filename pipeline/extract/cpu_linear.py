"""Faster float32 linear layers for CPU inference: oneDNN matrix products on weights packed once.

`torch.nn.Linear` on the CPU calls MKL's sgemm, which reorders the weight matrix into its blocked layout on every
call. Packing each weight once into oneDNN's layout (`torch.ops.mkldnn._reorder_linear_weight`, what TorchInductor's
CPU freezing does) and calling oneDNN directly is 1.2x faster on a whole BERT forward pass here (2 cores, AVX-512;
`benchmarks/bench_text.py` prints both), and the results are float32 products like before (they differ from MKL's
in rounding only: about 1e-6 relative).

The ops are internal to PyTorch, so every packed layer is checked against `F.linear` on a probe when it is built;
when an op is missing (a build without oneDNN) or disagrees, nothing is replaced and the caller is told why.
"""

from __future__ import annotations

import torch
from torch import nn


class PackedLinear(nn.Module):
    """An inference-only `nn.Linear`: y = x W^T + b, with W held in oneDNN's packed layout."""

    def __init__(self, linear: nn.Linear, rows_hint: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows_hint)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)


def _probe(linear: nn.Linear, packed: PackedLinear) -> str | None:
    """None when the packed layer gives F.linear's result on a few random rows, else what differs."""
    x = torch.randn(4, linear.in_features, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = nn.functional.linear(x, linear.weight, linear.bias)
        got = packed(x)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
        return f"packed result differs from F.linear (max {float((got - expected).abs().max()):.2e})"
    return None


def pack_linear_layers(model: nn.Module, rows_hint: int) -> int:
    """Replace every float32 `nn.Linear` of a CPU model with a checked `PackedLinear`; returns how many.

    All or nothing: raises RuntimeError, with the model unchanged, when oneDNN is unavailable or a packed layer
    does not reproduce its original.
    """
    if not torch.backends.mkldnn.is_available():
        raise RuntimeError("this PyTorch build has no oneDNN (mkldnn)")
    swaps: list[tuple[nn.Module, str, PackedLinear]] = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if not isinstance(child, nn.Linear):
                continue
            if child.weight.dtype != torch.float32 or child.weight.device.type != "cpu":
                raise RuntimeError(f"layer {name} is {child.weight.dtype} on {child.weight.device}, not float32 on "
                                   "the CPU")
            try:
                packed = PackedLinear(child, rows_hint)
                problem = _probe(child, packed)
            except (RuntimeError, AttributeError) as err:  # the op is missing or refuses the weight
                problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            if problem:
                raise RuntimeError(f"layer {name}: {problem}")
            swaps.append((parent, name, packed))
    for parent, name, packed in swaps:
        setattr(parent, name, packed)
    return len(swaps)
