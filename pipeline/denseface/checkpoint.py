"""The Denseface checkpoint file: weights plus everything needed to use them (network shape, classes, input
normalisation), written by `train-denseface` and read by the `denseface` extractor.

A plain `torch.save` of a dict of tensors, strings and numbers, so it loads with `torch.load(weights_only=True)`
(no pickled code runs). A lab with weights from elsewhere (e.g. converted from the authors' TensorFlow model)
writes them with `save_checkpoint` once and the extractor takes them like its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.denseface import Denseface, DensefaceConfig
from pipeline.torch_files import CheckpointError, read_torch_file

__all__ = ["CheckpointError", "DensefaceCheckpoint", "Normalisation", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "affectflow.denseface"
CHECKPOINT_VERSION = 1
_REQUIRED = ("format", "format_version", "state_dict", "network", "classes", "normalisation")


@dataclass(frozen=True)
class Normalisation:
    """How a face crop becomes the network input: resized to size x size grayscale, then (x - mean) / std."""

    size: int
    mean: float
    std: float

    def to_dict(self) -> dict[str, float | int]:
        return {"size": self.size, "mean": self.mean, "std": self.std}


@dataclass
class DensefaceCheckpoint:
    network: DensefaceConfig
    classes: list[str]
    normalisation: Normalisation
    state_dict: dict[str, torch.Tensor]
    extra: dict[str, Any]

    def build(self) -> Denseface:
        """The network with the weights loaded, in eval mode."""
        with torch.device("meta"):  # no initialisation that the weights would overwrite
            model = Denseface(self.network, initialise=False)
        model.load_state_dict(self.state_dict, assign=True)
        return model.eval()


def save_checkpoint(path: str | Path, model: Denseface, classes: list[str], normalisation: Normalisation,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint (temporary file, then rename). `extra` holds plain provenance (epoch, accuracy, ...)."""
    if len(classes) != model.config.n_classes:
        raise ValueError(f"{len(classes)} class names for a {model.config.n_classes}-class head")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()},
        "network": model.config.to_dict(), "classes": list(classes), "normalisation": normalisation.to_dict(),
        "extra": dict(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _differences(configured: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    return [f"{key}: configured {configured[key]!r}, checkpoint {stored.get(key)!r}"
            for key in sorted(configured) if stored.get(key) != configured[key]]


def _check_weights_fit(path: Path, network: DensefaceConfig, state: dict[str, Any]) -> None:
    """The stored weights are exactly the declared network's: no name missing or extra, every shape equal."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        reference = Denseface(network, initialise=False).state_dict()
    missing = sorted(set(reference) - set(state))
    unexpected = sorted(set(state) - set(reference))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in reference.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} weights missing (first {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (first {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} weights of the wrong shape (first {wrong[0]})")
        raise CheckpointError(f"{path}: the weights do not fit the network it declares "
                              f"({network}): " + "; ".join(parts))


def load_checkpoint(path: str | Path, expected_network: dict[str, Any] | None = None) -> DensefaceCheckpoint:
    """Read and check a checkpoint with `torch.load(weights_only=True)`.

    `expected_network` holds the network settings the caller was configured with (any subset of
    DensefaceConfig's fields); a checkpoint whose network differs fails here, naming each differing setting,
    as does one whose weights do not fit its own declared network.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: Denseface checkpoint not found (train one with `affectflow "
                              f"train-denseface` or convert existing weights with save_checkpoint)")
    payload = read_torch_file(path, "Denseface checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        keys = sorted(payload)[:6] if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: not an affectflow Denseface checkpoint (format "
                              f"{payload.get('format') if isinstance(payload, dict) else None!r}, keys {keys})")
    absent = [k for k in _REQUIRED if k not in payload]
    if absent:
        raise CheckpointError(f"{path}: checkpoint lacks {absent}")
    if payload["format_version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {payload['format_version']}, this code reads "
                              f"{CHECKPOINT_VERSION}")
    stored = dict(payload["network"])
    if expected_network:
        unknown = sorted(set(expected_network) - set(DensefaceConfig.__dataclass_fields__))
        if unknown:
            raise CheckpointError(f"unknown Denseface network settings {unknown}")
        differs = _differences(dict(expected_network), stored)
        if differs:
            raise CheckpointError(f"{path}: the checkpoint does not fit the configured network: "
                                  + "; ".join(differs))
    try:
        network = DensefaceConfig.from_dict(stored)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid network settings in the checkpoint: {err}") from None
    state = payload["state_dict"]
    _check_weights_fit(path, network, state)
    classes = [str(c) for c in payload["classes"]]
    if len(classes) != network.n_classes:
        raise CheckpointError(f"{path}: {len(classes)} class names for a {network.n_classes}-class head")
    norm = payload["normalisation"]
    try:
        normalisation = Normalisation(int(norm["size"]), float(norm["mean"]), float(norm["std"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad normalisation {norm!r} ({err})") from None
    if normalisation.size < 8 or normalisation.std <= 0:
        raise CheckpointError(f"{path}: bad normalisation {norm!r} (size >= 8 and std > 0 needed)")
    return DensefaceCheckpoint(network, classes, normalisation, state, dict(payload.get("extra") or {}))
