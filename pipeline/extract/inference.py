"""Where and in which precision a transformers encoder runs: the `device` and `dtype` settings every neural
extractor shares (text, speech), checked before any work."""

from __future__ import annotations

import re
from typing import Any

from pipeline.extract import ExtractorConfigError

DTYPES = ("float32", "float16", "bfloat16")
_LAYER = re.compile(r"^(last|mean_last_(?P<k>[1-9][0-9]*))$")


def pick_device(preference: str, who: str) -> str:
    """`auto` -> cuda when present, else cpu; an explicit device is checked to exist."""
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError):
        raise ExtractorConfigError(f"{who}: device must be auto, cpu or cuda[:n], got {preference!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExtractorConfigError(f"{who}: device {preference!r} requested but CUDA is not available")
    return str(device)


def pick_dtype(name: str, device: str, who: str) -> str:
    """`auto` -> float16 on a GPU, float32 on the CPU; float16 on the CPU is refused (slow and inexact)."""
    if name == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    if name not in DTYPES:
        raise ExtractorConfigError(f"{who}: dtype must be auto, float32, float16 or bfloat16, got {name!r}")
    if name == "float16" and device == "cpu":
        raise ExtractorConfigError(f"{who}: float16 on the CPU is slow and inexact; use float32 or bfloat16")
    return name


def layers_averaged(layer: Any, who: str) -> int:
    """k of `mean_last_<k>` (1 for `last`)."""
    match = _LAYER.match(str(layer))
    if not match:
        raise ExtractorConfigError(f"{who}: layer must be 'last' or 'mean_last_<k>' (k >= 1), got {layer!r}")
    return int(match.group("k") or 1)
