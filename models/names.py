"""The modalities, MMIN's condition table and the unlabelled marker: plain constants without torch, so that
pipeline stages that only need the names (the split stage) do not import torch."""

from __future__ import annotations

MODALITIES = ("audio", "visual", "text")
# condition name -> (audio, visual, text) presence, as MMIN writes them
CONDITIONS: dict[str, tuple[int, int, int]] = {
    "azz": (1, 0, 0), "zvz": (0, 1, 0), "zzl": (0, 0, 1),
    "avz": (1, 1, 0), "azl": (1, 0, 1), "zvl": (0, 1, 1),
    "avl": (1, 1, 1),
}
MISSING_CONDITIONS = ("azz", "zvz", "zzl", "avz", "azl", "zvl")
UNLABELLED = -1
